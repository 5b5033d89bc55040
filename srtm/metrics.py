"""Prometheus metrics for a gate: what was decided, for whom, and the state it runs in.

:class:`GatewayMetrics` is a prometheus-client collector for one gate (sync or async).
The middleware calls :meth:`~GatewayMetrics.observe` once per identified request with
the gate's :class:`~srtm.gate.Decision` and the time the decision took, and
:meth:`~GatewayMetrics.unidentified` once per 401. Everything else (traffic management
on or off, capacity, budget, each named User's limit, a degraded store) is read from
the gate when Prometheus scrapes, so it costs nothing per request.

Label cardinality never grows with identities: a User not named in its pool's
``allocations`` is counted under ``user="_other"``, an unidentified request under
``user="_unidentified"``, and a pool the gate does not know under ``pool="_unknown"``.
No real User ID can clash with these: User IDs start with a letter or digit.

Families (``srtm`` is the default ``namespace``):

- ``srtm_requests_total{pool,user,outcome}`` counter; outcome is ``admitted``,
  ``refused_user``, ``refused_capacity``, ``shadow_refused`` (would have been refused,
  passed through in shadow mode) or ``unidentified``.
- ``srtm_decision_duration_seconds{pool}`` histogram of the time one decision took.
- ``srtm_traffic_management_active{pool}`` 1 while traffic management is on.
- ``srtm_capacity{pool}`` and ``srtm_budget{pool}`` in SR/s, as in force now.
- ``srtm_user_limit{pool,user}`` in SR/s while traffic management is on (absent while
  it is off: nobody has a limit then): each named User's fair-share limit, and under
  ``_other`` the sum of the limits of all Users not named (what they may get together).
- ``srtm_store_degraded`` 1 while the shared store has failed and this node decides
  locally on its share.

Needs the ``prometheus`` extra: ``pip install 'srtm[prometheus]'``.
"""

from __future__ import annotations

from srtm._extras import require

require("srtm.metrics", "prometheus", "prometheus_client")

import re  # noqa: E402
from typing import TYPE_CHECKING, NamedTuple  # noqa: E402

from prometheus_client import CollectorRegistry, Counter, Histogram  # noqa: E402
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.exposition import choose_encoder  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

from srtm.ledger import Reason  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from prometheus_client.metrics_core import Metric

    from srtm.gate import Decision, GateCore

__all__ = [
    "LATENCY_BUCKETS",
    "OTHER",
    "OUTCOMES",
    "UNIDENTIFIED",
    "UNKNOWN_POOL",
    "GatewayMetrics",
]

#: The ``user`` label of every User not named in its pool's allocations.
OTHER = "_other"
#: The ``user`` label of a request refused with 401.
UNIDENTIFIED = "_unidentified"
#: The ``pool`` label of a pool the gate does not have.
UNKNOWN_POOL = "_unknown"
#: The values of the ``outcome`` label.
OUTCOMES = ("admitted", "refused_user", "refused_capacity", "shadow_refused", "unidentified")

#: Decision-latency buckets (seconds): tens of microseconds for an in-process decision,
#: hundreds for a Redis round trip, up to the socket timeouts of a failing store.
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)

_NAMESPACE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class _Series(NamedTuple):
    """The request counters of one (pool, user) label pair, looked up once."""

    admitted: Counter
    refused_user: Counter
    refused_capacity: Counter
    shadow_refused: Counter


class GatewayMetrics(Collector):
    """A prometheus-client collector for one gate (:class:`~srtm.Gate` or ``AsyncGate``).

    Registered on ``registry`` when given (``prometheus_client.REGISTRY`` for the
    process-wide one), else on a private :class:`~prometheus_client.CollectorRegistry`
    of its own. :meth:`render` answers a scrape from that registry.
    """

    def __init__(
        self,
        gate: GateCore,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "srtm",
    ) -> None:
        if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
            raise ValueError(
                f"namespace must be a Prometheus metric name prefix, got {namespace!r}"
            )
        self.gate = gate
        self.namespace = namespace
        self._named: dict[str, frozenset[str]] = {}
        for name, pool in gate.pools.items():
            # No allocation can name _other or _unidentified: a policy's keys must be User
            # IDs, which start with a letter or digit (TrafficPolicy checks it).
            self._named[name] = frozenset(pool.policy.allocations)
        # Built unregistered: this collector yields them, so one registration covers all.
        self._requests = Counter(
            "requests",
            "Requests decided, by pool, User (named in the allocations, else _other) and outcome.",
            ["pool", "user", "outcome"],
            namespace=namespace,
            registry=None,
        )
        self._latency = Histogram(
            "decision_duration_seconds",
            "Time one admission decision took (seconds), store round trip included.",
            ["pool"],
            namespace=namespace,
            registry=None,
            buckets=LATENCY_BUCKETS,
        )
        # Every series exists from the start, at 0, so rate() sees the first request.
        self._series: dict[tuple[str, str], _Series] = {}
        self._timers: dict[str, Histogram] = {}
        self._unidentified: dict[str, Counter] = {}
        for name, named in self._named.items():
            for user in (*sorted(named), OTHER):
                self._series[name, user] = self._make_series(name, user)
            self._timers[name] = self._latency.labels(name)
            self._unidentified[name] = self._requests.labels(name, UNIDENTIFIED, "unidentified")
        self.registry: CollectorRegistry = CollectorRegistry() if registry is None else registry
        try:
            self.registry.register(self)
        except ValueError as exc:  # prometheus-client's duplicated-timeseries error
            raise ValueError(
                f"{exc}: these names are taken on that registry (another GatewayMetrics "
                f"with namespace {namespace!r}?); unregister() it first, or use another "
                "registry or namespace"
            ) from exc

    def _make_series(self, pool: str, user: str) -> _Series:
        c = self._requests
        return _Series(
            c.labels(pool, user, "admitted"),
            c.labels(pool, user, "refused_user"),
            c.labels(pool, user, "refused_capacity"),
            c.labels(pool, user, "shadow_refused"),
        )

    # -- the per-request path ------------------------------------------------------------

    def observe(self, decision: Decision, seconds: float) -> None:
        """Count one decision's requests by outcome, and the time it took.

        A partly admitted decision (``offered > 1``) counts its admitted and refused
        parts apart. In shadow mode the refused part counts as ``shadow_refused``,
        whatever refused it.
        """
        if not seconds >= 0.0:  # also NaN, which would poison the histogram's sum
            raise ValueError(f"seconds must be a duration >= 0, got {seconds!r}")
        pool = decision.pool
        named = self._named.get(pool)
        if named is None:  # not a Decision of this gate; never a new label value
            series = self._make_series(UNKNOWN_POOL, OTHER)
            timer = self._latency.labels(UNKNOWN_POOL)
        else:
            series = self._series[pool, decision.user if decision.user in named else OTHER]
            timer = self._timers[pool]
        admitted = decision.admitted
        if admitted > 0:
            series.admitted.inc(admitted)
        refused = decision.offered - admitted
        if refused > 0:
            if decision.shadow:
                series.shadow_refused.inc(refused)
            elif decision.reason is Reason.CAPACITY:
                series.refused_capacity.inc(refused)
            else:
                series.refused_user.inc(refused)
        timer.observe(seconds)

    def unidentified(self, pool: str | None = None) -> None:
        """Count one request refused with 401, in ``pool`` when it is known.

        ``None`` means the pool was not chosen: counted in the gate's only pool when it
        has one, else under ``pool="_unknown"``, as is a pool the gate does not have.
        """
        if pool is None and len(self._named) == 1:
            pool = next(iter(self._named))
        counter = self._unidentified.get(pool) if pool is not None else None
        if counter is None:
            counter = self._requests.labels(UNKNOWN_POOL, UNIDENTIFIED, "unidentified")
        counter.inc()

    # -- scrape time ---------------------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        """The families this collector yields, so a registry can refuse a clash."""
        yield from self._requests.describe()
        yield from self._latency.describe()
        yield from self._gauges(with_samples=False)

    def collect(self) -> Iterable[Metric]:
        """The counters kept per request, and the gate's state read now."""
        yield from self._requests.collect()
        yield from self._latency.collect()
        yield from self._gauges(with_samples=True)

    def _gauges(self, *, with_samples: bool) -> Iterator[Metric]:
        ns = self.namespace
        active = GaugeMetricFamily(
            f"{ns}_traffic_management_active",
            "1 while traffic management is on in the pool, else 0.",
            labels=["pool"],
        )
        capacity = GaugeMetricFamily(f"{ns}_capacity", "Capacity in force (SR/s).", labels=["pool"])
        budget = GaugeMetricFamily(
            f"{ns}_budget",
            "Budget in force: threshold x capacity (SR/s); traffic management engages there.",
            labels=["pool"],
        )
        limits = GaugeMetricFamily(
            f"{ns}_user_limit",
            "A named User's limit while traffic management is on (SR/s); under _other, "
            "the sum of the limits of the Users not named. Absent while it is off.",
            labels=["pool", "user"],
        )
        degraded = GaugeMetricFamily(
            f"{ns}_store_degraded",
            "1 while the shared store has failed and this node decides locally, else 0.",
        )
        if with_samples:
            for name, p in self.gate.pools.items():
                gov = p.governor
                active.add_metric([name], 1.0 if gov.active else 0.0)
                capacity.add_metric([name], gov.capacity)
                budget.add_metric([name], gov.budget)
                shares = gov.limits  # replaced whole on recomputation: one consistent read
                if shares is None:
                    continue
                named = self._named[name]
                for user in sorted(named):
                    limit = shares.get(user)
                    limits.add_metric(
                        [name, user], p.policy.guarantee(user) if limit is None else limit
                    )
                limits.add_metric(
                    [name, OTHER], sum(v for u, v in shares.items() if u not in named)
                )
            degraded.add_metric([], 0.0 if self.gate.degraded_since is None else 1.0)
        yield from (active, capacity, budget, limits, degraded)

    # -- serving -------------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry's exposition and its content type, for a ``/metrics`` response.

        ``accept`` is the scrape's Accept header: OpenMetrics when the scraper asks for
        it, the Prometheus text format otherwise.
        """
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def unregister(self) -> None:
        """Take these metrics off their registry (before replacing the gate, say)."""
        self.registry.unregister(self)
