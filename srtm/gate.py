"""One request's decision: admit, or refuse with a status and a Retry-After.

A :class:`Gate` holds one :class:`~srtm.governor.Governor` per pool and one ledger per
storage. Per request it costs one ledger call (one Redis round trip), or none when the
User was already refused in the current window on a quota no smaller than its quota
now: such refusals are answered from a local cache and their count is carried to the
store with the next recomputation. With a :class:`~srtm.lease.LeasePolicy` on a pool
backed by a shared store, one round trip grants a block of a User's admissions and
the User's next requests are admitted from it locally (see :mod:`srtm.lease`).
Recomputation (reading the last window's offered counts, smoothing, fair share) runs
off the hot path, every ``control_period``.

If the shared store fails the gate keeps deciding on a local ledger, each node taking
``1/nodes`` of every figure, logs it loudly, and probes the store again with backoff.
A storage fault never reaches the User as a 500.

:class:`GateCore` holds everything without I/O; :class:`Gate` (threads, sync storages)
and :class:`srtm.aio.gate.AsyncGate` (asyncio, ``limits.aio`` storages) repeat only
the I/O.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from srtm.governor import Governor
from srtm.lease import Lease
from srtm.ledger import MemoryLedger, Outcome, Quota, Reason, ledger_for, room
from srtm.policy import TrafficPolicy, parse_duis_version

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from srtm.identity import Identity
    from srtm.lease import LeasePolicy
    from srtm.ledger import Ledger

__all__ = ["Decision", "Gate", "GateCore", "Reason", "normalise_pools"]

L = TypeVar("L")

log = logging.getLogger("srtm.gate")

# The longest Retry-After advertised through an outage (capacity 0), seconds: long
# enough to thin the refusals fivefold, short enough that the top-ups waiting at
# recovery are not held back (the simulator's dsp-outage: 60 s cost 35 s of drain).
_OUTAGE_RETRY_MAX = 10.0

# Backoff between probes of a failed store: first retry after this, doubling to the max.
_PROBE_FIRST, _PROBE_MAX = 1.0, 30.0


def normalise_pools(
    policy: TrafficPolicy | Mapping[str, TrafficPolicy],
) -> dict[str, TrafficPolicy]:
    """One policy is the pool ``default``; a mapping names each pool's policy."""
    from srtm._errors import PolicyError
    from srtm.identity import DEFAULT_POOL, valid_user_id

    if isinstance(policy, TrafficPolicy):
        return {DEFAULT_POOL: policy}
    pools = dict(policy)
    if not pools:
        raise PolicyError("pools", "at least one pool is needed")
    for name, value in pools.items():
        if not isinstance(name, str) or not valid_user_id(name):
            raise PolicyError("pools", f"pool names must be short tokens, got {name!r}")
        if not isinstance(value, TrafficPolicy):
            raise PolicyError(f"pools[{name!r}]", f"must be a TrafficPolicy, got {value!r}")
    return pools


def _count(rate_times_window: float) -> int:
    """Requests per window for a positive rate: rounded, at least 1 (a guarantee is kept)."""
    if rate_times_window <= 0:
        return 0
    return max(1, round(rate_times_window))


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer for ``offered`` requests of one User (1 for an HTTP request)."""

    user: str
    pool: str
    offered: int
    admitted: int
    reason: Reason
    status: int  # 200 when admitted; 429 or 503 when refused
    retry_after: int | None  # whole seconds >= 1 when refused
    limit: int  # quota of the User's current window (RateLimit-Policy q)
    remaining: int  # what the User may still send in this window (RateLimit r)
    reset: int  # whole seconds until the window ends (RateLimit t)
    window: int  # the window in whole seconds (RateLimit-Policy w)
    shadow: bool = False  # refused in shadow mode: reported, passed through
    degraded: bool = False  # decided locally because the shared store failed

    @property
    def allowed(self) -> bool:
        """Whether the request goes through (always, in shadow mode)."""
        return self.shadow or self.admitted == self.offered

    def rate_limit_headers(self) -> list[tuple[str, str]]:
        """IETF ``RateLimit-Policy`` and ``RateLimit`` fields (structured-field form)."""
        name = _quoted(self.pool)
        return [
            ("RateLimit-Policy", f"{name};q={self.limit};w={self.window}"),
            ("RateLimit", f"{name};r={self.remaining};t={self.reset}"),
        ]

    def refusal_headers(self) -> list[tuple[str, str]]:
        """Headers of a refusal: Retry-After, who refused, and the RateLimit fields."""
        kind = "capacity" if self.reason is Reason.CAPACITY else "user-limit"
        return [
            ("Retry-After", str(self.retry_after or 1)),
            ("X-SRTM-Refused", kind),
            *self.rate_limit_headers(),
        ]

    def refusal_body(self) -> bytes:
        """A short JSON body: what happened, to whom, and when to retry."""
        # Written out rather than json.dumps'd: a flood is answered with this body.
        error, detail = _CAPACITY if self.reason is Reason.CAPACITY else _THROTTLED
        retry = "null" if self.retry_after is None else str(int(self.retry_after))
        return (
            f'{{"error":"{error}","status":{int(self.status)},"user":{_quoted(self.user)},'
            f'"pool":{_quoted(self.pool)},"retry_after":{retry},"detail":"{detail}"}}'
        ).encode()


_CAPACITY = ("capacity", "the back end is at capacity; retry after the given delay")
_THROTTLED = (
    "throttled",
    "traffic management is active and this Service User is over its "
    "allocation or fair share; retry after the given delay",
)
# Small caches for the hot path, emptied when they grow past this many entries.
_CACHE_MAX = 4096
_QUOTED: dict[str, str] = {}
_VERSIONS: dict[str, tuple[int, ...] | None] = {}


def _quoted(name: str) -> str:
    """A User or pool name as a JSON (and structured-field) string, computed once."""
    found = _QUOTED.get(name)
    if found is None:
        if len(_QUOTED) >= _CACHE_MAX:
            _QUOTED.clear()
        found = _QUOTED[name] = json.dumps(name)
    return found


def _version(text: str) -> tuple[int, ...] | None:
    """:func:`parse_duis_version`, computed once per string."""
    try:
        return _VERSIONS[text]
    except KeyError:
        if len(_VERSIONS) >= _CACHE_MAX:
            _VERSIONS.clear()
        parsed = _VERSIONS[text] = parse_duis_version(text)
        return parsed


@dataclass
class UserStats:
    """Cumulative counts of one User on this node."""

    offered: int = 0
    admitted: int = 0
    refused_user: int = 0
    refused_capacity: int = 0
    shadow_refused: int = 0
    cached_refusals: int = 0
    leased: int = 0  # admitted from a lease, without a store round trip


@dataclass
class _Pool:
    name: str
    policy: TrafficPolicy
    governor: Governor
    # offered requests decided locally (cached refusals, leases), not yet in the store
    pending: defaultdict[int, defaultdict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    # user -> (window, quota) of a refusal for the User's own sake
    refused: dict[str, tuple[int, Quota]] = field(default_factory=dict)
    full: int = -1  # last window in which the hard cap was reached
    stats: defaultdict[str, UserStats] = field(default_factory=lambda: defaultdict(UserStats))
    # Quotas of the governor's current epoch, by User (a quota changes only when it does).
    quotas: dict[str, Quota] = field(default_factory=dict)
    quotas_epoch: int = -1
    last_tick: float | None = None  # when the governor was last fed
    outage_since: float | None = None  # when capacity was set to 0, while it is
    lease: LeasePolicy | None = None  # set by a gate whose store for this pool is shared
    leases: dict[str, Lease] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.window = self.policy.window
        self.window_s = max(1, math.ceil(self.window))


class GateCore:
    """Decision logic shared by the sync and async gates; no I/O."""

    def __init__(
        self,
        policy: TrafficPolicy | Mapping[str, TrafficPolicy],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pools = {
            name: _Pool(name, p, Governor(p)) for name, p in normalise_pools(policy).items()
        }
        self.clock = clock
        self._lock = threading.Lock()
        self._probe_at = 0.0  # when the failed store may be tried again (0: healthy)
        self._probe_backoff = _PROBE_FIRST
        self.degraded_since: float | None = None

    def ledger_per_pool(
        self, uri_of: Callable[[TrafficPolicy], str], make: Callable[[TrafficPolicy], L]
    ) -> dict[str, L]:
        """One ledger per distinct storage URI, shared by the pools that name it."""
        by_uri: dict[str, L] = {}
        by_pool: dict[str, L] = {}
        for name, p in self.pools.items():
            uri = uri_of(p.policy)
            if uri not in by_uri:
                by_uri[uri] = make(p.policy)
            by_pool[name] = by_uri[uri]
        return by_pool

    # -- figures -------------------------------------------------------------------------

    def pool(self, name: str) -> _Pool:
        """The pool called ``name`` (KeyError if there is none)."""
        return self.pools[name]

    def window_of(self, p: _Pool, now: float) -> int:
        """Index of the fixed window holding ``now`` (the same on every node)."""
        return math.floor(now / p.policy.window)

    def quota(self, p: _Pool, user: str, *, degraded: bool = False) -> Quota:
        """``user``'s figures for one window; a degraded node takes only its share.

        A named User's guarantee and limit round up to at least one request (a guarantee
        is kept). A member of the unnamed Users' collective rounds down: its share may be
        a fraction of a request, and rounding up would let enough identities hold more
        than the collective together (the governor already hands out whole requests).
        """
        policy, gov = p.policy, p.governor
        scale = policy.window / policy.nodes if degraded else policy.window
        cap = math.floor(gov.capacity * scale + 1e-9)
        limit = gov.admission_limit(user) * scale
        guarantee = gov.guarantee(user) * scale
        if gov.member(user):
            limit_n, guarantee_n = math.floor(limit + 1e-9), math.floor(guarantee + 1e-9)
        else:
            limit_n, guarantee_n = _count(limit), _count(guarantee)
        return Quota(
            limit=min(limit_n, cap),
            guarantee=min(guarantee_n, cap),
            budget=math.floor(gov.budget_for(user) * scale + 1e-9),
            cap=cap,
        )

    def quota_for(self, p: _Pool, user: str) -> Quota:
        """:meth:`quota` of a healthy node, computed once per User and governor epoch.

        The governor bumps its epoch whenever anything a quota depends on changes
        (recomputation, a capacity change), so a quota of the same epoch is the same.
        """
        epoch = p.governor.epoch
        if p.quotas_epoch != epoch:
            p.quotas = {}
            p.quotas_epoch = epoch
        quota = p.quotas.get(user)
        if quota is None:
            quota = p.quotas[user] = self.quota(p, user)
        return quota

    # -- the decision --------------------------------------------------------------------

    def cached(self, p: _Pool, user: str, window: int, quota: Quota | None = None) -> Reason | None:
        """A refusal already known for this window, so no store round trip is needed.

        A User refused for its own sake stays refused while its quota is no larger in
        any figure: counts only grow within a window, so the store would refuse again.
        """
        if p.full == window:
            return Reason.CAPACITY
        hit = p.refused.get(user)
        if hit is None or hit[0] != window:
            return None
        was = hit[1]
        if quota is None:
            quota = self.quota_for(p, user)
        if quota is was or (
            quota.limit <= was.limit
            and quota.guarantee <= was.guarantee
            and quota.budget <= was.budget
            and quota.cap <= was.cap
        ):
            return Reason.USER
        return None

    def record(
        self,
        p: _Pool,
        user: str,
        window: int,
        n: int,
        outcome: Outcome,
        quota: Quota | None = None,
    ) -> None:
        """Remember a refusal for the rest of the window, and count."""
        admitted = outcome.admitted
        if admitted >= n:
            with self._lock:
                stats = p.stats[user]
                stats.offered += n
                stats.admitted += admitted
            return
        if outcome.reason is Reason.CAPACITY:
            p.full = window
        else:
            p.refused[user] = (window, quota if quota is not None else self.quota_for(p, user))
        with self._lock:
            stats = p.stats[user]
            stats.offered += n
            stats.admitted += admitted
            if outcome.reason is Reason.CAPACITY:
                stats.refused_capacity += n - admitted
            elif outcome.reason is Reason.USER:
                stats.refused_user += n - admitted

    def record_cached(self, p: _Pool, user: str, window: int, n: int, reason: Reason) -> None:
        """Count a refusal answered from the cache; its offered count goes to the store later."""
        with self._lock:
            p.pending[window][user] += n
            stats = p.stats[user]
            stats.offered += n
            stats.cached_refusals += n
            if reason is Reason.CAPACITY:
                stats.refused_capacity += n
            else:
                stats.refused_user += n

    def from_lease(
        self, p: _Pool, identity: Identity, n: int, now: float, window: int, quota: Quota
    ) -> Decision | None:
        """The decision when this node's lease for the User covers ``n``, else None."""
        user = identity.user
        lease = p.leases.get(user)
        if lease is None:
            return None
        with self._lock:
            if lease.usable(window, p.governor.epoch, quota) < n:
                return None
            used, total = lease.spend(n)
            p.pending[window][user] += n
            stats = p.stats[user]
            stats.offered += n
            stats.admitted += n
            stats.leased += n
        outcome = Outcome(n, Reason.ADMITTED, used, total)
        return self.decision(p, identity, n, now, quota, outcome, degraded=False)

    def lease_want(self, p: _Pool, user: str, n: int, now: float, window: int) -> int:
        """How many admissions to ask the store for when ``n`` are needed now."""
        assert p.lease is not None
        with self._lock:
            lease = p.leases.get(user)
            if lease is None:
                lease = p.leases[user] = Lease()
            rate = lease.estimate(now)
        return p.lease.want(n, rate, (window + 1) * p.window - now)

    def leased(
        self, p: _Pool, user: str, n: int, now: float, window: int, quota: Quota, got: Outcome
    ) -> Outcome:
        """Keep what a grant gave beyond ``n`` as the User's lease; the outcome for ``n``."""
        if got.admitted < n:  # refused (in part): no block, and nothing to learn a rate from
            return got
        rest = got.admitted - n
        with self._lock:
            lease = p.leases.get(user)
            if lease is None:
                lease = p.leases[user] = Lease()
            epoch = p.governor.epoch
            lease.granted(now, window, epoch, quota, n, got.admitted, got.used, got.total)
        if not rest:
            return got
        return Outcome(n, Reason.ADMITTED, got.used - rest, got.total - rest)

    def refuse_cached(
        self,
        p: _Pool,
        identity: Identity,
        n: int,
        now: float,
        window: int,
        quota: Quota,
        reason: Reason,
        degraded: bool,
    ) -> Decision:
        """The decision for a refusal answered from the cache."""
        self.record_cached(p, identity.user, window, n, reason)
        outcome = Outcome(0, reason, quota.limit, quota.cap)
        return self.decision(p, identity, n, now, quota, outcome, degraded=degraded)

    def decision(
        self,
        p: _Pool,
        identity: Identity,
        n: int,
        now: float,
        quota: Quota,
        outcome: Outcome,
        *,
        degraded: bool,
    ) -> Decision:
        """Turn a ledger outcome into status, Retry-After and the RateLimit figures."""
        w = p.window
        to_reset = (math.floor(now / w) + 1) * w - now
        if to_reset < 0.0:
            to_reset = 0.0
        reset = math.ceil(to_reset - 1e-9)
        if reset < 1:
            reset = 1
        remaining = room(outcome.used, outcome.total, quota)
        limit = quota.limit if quota.limit > 0 else 0
        admitted = outcome.admitted
        if admitted >= n:
            return Decision(
                identity.user,
                p.name,
                n,
                admitted,
                outcome.reason,
                200,
                None,
                limit,
                remaining,
                reset,
                p.window_s,
                False,
                degraded,
            )
        policy = p.policy
        if outcome.reason is Reason.CAPACITY:
            status = 503
            stalled = quota.cap == 0
        else:
            status = 429 if _speaks_429(identity.duis_version, policy) else 503
            stalled = quota.limit == 0
        # When this User can next be admitted: the next window, or, with nothing to
        # share out at all, not before the next recomputation after it. Through an
        # outage (capacity 0) nobody knows; the answer grows with the outage, as a
        # client's own backoff would, so a backlog is not resent every two seconds.
        wait = to_reset + (policy.control_period or policy.window if stalled else 0.0)
        if stalled and quota.cap == 0 and p.outage_since is not None:
            wait = max(wait, min(now - p.outage_since, _OUTAGE_RETRY_MAX))
        retry_after = max(1, math.ceil(wait - 1e-9))
        shadow = policy.shadow
        if shadow:
            with self._lock:
                p.stats[identity.user].shadow_refused += n - admitted
        return Decision(
            identity.user,
            p.name,
            n,
            admitted,
            outcome.reason,
            200 if shadow else status,
            None if shadow else retry_after,
            limit,
            remaining,
            reset,
            p.window_s,
            shadow,
            degraded,
        )

    # -- store health --------------------------------------------------------------------

    def store_usable(self, now: float) -> bool:
        """True unless the store failed and it is not yet time to probe it again."""
        return self._probe_at == 0.0 or now >= self._probe_at

    def store_failed(self, now: float, exc: BaseException) -> None:
        """Switch to local decisions and say so loudly; back off before the next probe."""
        if self.degraded_since is None:
            self.degraded_since = now
            log.error(
                "srtm: the counter store failed (%s: %s); deciding locally, each node taking "
                "1/nodes of every pool's figures, until it answers again",
                type(exc).__name__,
                exc,
            )
        else:
            self._probe_backoff = min(self._probe_backoff * 2, _PROBE_MAX)
        self._probe_at = now + self._probe_backoff

    def store_ok(self, now: float) -> None:
        """The store answered: leave degraded mode if in it."""
        if self.degraded_since is not None:
            log.warning(
                "srtm: the counter store answers again after %.1f s; deciding on it",
                now - self.degraded_since,
            )
            self.degraded_since = None
        self._probe_at, self._probe_backoff = 0.0, _PROBE_FIRST

    # -- recomputation -------------------------------------------------------------------

    def use_leases(self, shared: set[str]) -> None:
        """Turn on each shared pool's leases, if its policy asks for them."""
        for name in shared:
            self.pools[name].lease = self.pools[name].policy.lease

    def take_user_pending(self, p: _Pool, window: int, user: str) -> int:
        """One User's locally counted offered requests of a window, emptied: a grant
        carries them to the store, so other nodes see them before the next flush."""
        with self._lock:
            counts = p.pending.get(window)
            return counts.pop(user, 0) if counts else 0

    def take_pending(self, p: _Pool) -> dict[int, dict[str, int]]:
        """Locally counted offered requests to add to the store, emptied."""
        with self._lock:
            pending = {w: dict(c) for w, c in p.pending.items() if c}
            p.pending.clear()
        return pending

    def return_pending(self, p: _Pool, pending: Mapping[int, Mapping[str, int]]) -> None:
        """Put back counts that could not be flushed, so none is lost."""
        with self._lock:
            for window, counts in pending.items():
                for user, count in counts.items():
                    p.pending[window][user] += count

    def absorb(
        self,
        p: _Pool,
        now: float,
        counts: tuple[Mapping[str, int], Mapping[str, int]],
        scale: int,
    ) -> None:
        """Feed the governor each User's offered rate.

        The estimate slides: the previous window weighted by the part of it still inside
        the last ``window`` seconds, plus the current window so far, so a flood shows
        within one control period, not after a whole window has closed. It is never
        below the previous full window's count, so a User whose requests come in bursts
        (a client paused by Retry-After returns once a window) is not taken for a
        lower rate between its bursts.
        """
        previous, current = counts
        phase = now / p.policy.window - self.window_of(p, now)
        offered: dict[str, float] = {}
        for user, count in previous.items():
            offered[user] = count * (1.0 - phase) * scale
        for user, count in current.items():
            offered[user] = offered.get(user, 0.0) + count * scale
        for user, count in previous.items():
            if offered[user] < count * scale:
                offered[user] = count * scale
        # Smoothing is per second, so the time since the last recomputation counts.
        last, p.last_tick = p.last_tick, now
        elapsed = p.policy.control_period or p.policy.window if last is None else now - last
        elapsed = min(max(elapsed, 0.0), 10 * p.policy.window)
        before = p.governor.active
        p.governor.update(offered, p.policy.window, elapsed=elapsed)
        if p.governor.active != before:
            log.warning(
                "srtm: traffic management %s in pool %r (offered %.0f SR/s, budget %.0f SR/s)",
                "engaged" if p.governor.active else "released",
                p.name,
                sum(offered.values()) / p.policy.window,
                p.governor.budget,
            )

    def set_capacity(
        self, capacity: float, pool: str | None = None, *, now: float | None = None
    ) -> None:
        """Change a pool's capacity at run time (every pool when there is only one).

        0 is an outage: everything is refused with 503, and the Retry-After advertised
        grows with the outage's length (up to 10 s).
        """
        names = [pool] if pool is not None else list(self.pools)
        if pool is None and len(names) > 1:
            raise ValueError("several pools: name the one whose capacity changes")
        now = self.clock() if now is None else now
        for name in names:
            p = self.pools[name]
            p.governor.set_capacity(capacity)
            p.full = -1  # a cached "pool full" may no longer hold
            if capacity > 0:
                if p.outage_since is not None:
                    # The clients told to wait are coming back together: stay on until
                    # the longest wait advertised has passed, and the release hold after.
                    hold = _OUTAGE_RETRY_MAX + p.policy.release_after * (
                        p.policy.control_period or p.policy.window
                    )
                    p.governor.hold(hold)
                p.outage_since = None
            elif p.outage_since is None:
                p.outage_since = now

    def snapshot(self) -> dict[str, Any]:
        """Counters and state an operator can read (JSON-serialisable)."""
        pools: dict[str, Any] = {}
        for name, p in self.pools.items():
            gov = p.governor
            with self._lock:
                users: dict[str, dict[str, Any]] = {
                    user: {
                        "offered": s.offered,
                        "admitted": s.admitted,
                        "refused_user": s.refused_user,
                        "refused_capacity": s.refused_capacity,
                        "shadow_refused": s.shadow_refused,
                        "cached_refusals": s.cached_refusals,
                        "leased": s.leased,
                    }
                    for user, s in p.stats.items()
                }
            for user, figures in users.items():
                figures["demand"] = round(gov.demand.get(user, 0.0), 3)
                limit = gov.limit(user)
                figures["limit"] = None if limit is None else round(limit, 3)
            pools[name] = {
                "active": gov.active,
                "shadow": p.policy.shadow,
                "capacity": gov.capacity,
                "budget": gov.budget,
                "offered_rate": round(sum(gov.demand.values()), 3),
                "users": users,
            }
        return {"degraded": self.degraded_since is not None, "pools": pools}


def _speaks_429(version: str | None, policy: TrafficPolicy) -> bool:
    parsed = _version(version) if version else None
    threshold = _version(policy.duis_429_from)
    return parsed is not None and threshold is not None and parsed >= threshold


class Gate(GateCore):
    """The sync gate, for WSGI servers and threads: ``limits`` sync storages."""

    def __init__(
        self,
        policy: TrafficPolicy | Mapping[str, TrafficPolicy],
        *,
        clock: Callable[[], float] = time.time,
        background: bool = True,
    ) -> None:
        super().__init__(policy, clock=clock)
        self._ledgers: dict[str, Ledger] = self.ledger_per_pool(
            lambda policy: policy.sync_storage_uri, ledger_for
        )
        self._shared = {n for n, led in self._ledgers.items() if not isinstance(led, MemoryLedger)}
        self.use_leases(self._shared)
        self._fallback = MemoryLedger(window=min(p.policy.window for p in self.pools.values()))
        self._background = background
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._tick_lock = threading.Lock()

    def decide(self, identity: Identity, n: int = 1, *, now: float | None = None) -> Decision:
        """Admit or refuse ``n`` requests of ``identity`` (KeyError for an unknown pool)."""
        if self._background and self._thread is None:
            self.start()
        p = self.pools[identity.pool]
        if now is None:
            now = self.clock()
        window = math.floor(now / p.window)
        user = identity.user
        if p.name not in self._shared:  # counted in this process: no round trip to save
            quota = self.quota_for(p, user)
            if p.full == window or user in p.refused:
                cached = self.cached(p, user, window, quota)
                if cached is not None:
                    return self.refuse_cached(p, identity, n, now, window, quota, cached, False)
            outcome = self._ledgers[p.name].take(p.name, window, user, n, quota)
            self.record(p, user, window, n, outcome, quota)
            return self.decision(p, identity, n, now, quota, outcome, degraded=False)
        degraded = not self.store_usable(now)
        quota = self.quota(p, user, degraded=True) if degraded else self.quota_for(p, user)
        if p.lease is not None and not degraded:
            leased = self.from_lease(p, identity, n, now, window, quota)
            if leased is not None:
                return leased
        cached = self.cached(p, user, window, quota)
        if cached is not None:
            return self.refuse_cached(p, identity, n, now, window, quota, cached, degraded)
        taken = None if degraded else self._take(p, window, user, n, quota, now)
        if taken is not None:
            outcome = taken
        else:  # the store failed, now or earlier: decide locally
            degraded = True
            quota = self.quota(p, user, degraded=True)
            outcome = self._fallback.take(p.name, window, user, n, quota)
        self.record(p, user, window, n, outcome, quota)
        return self.decision(p, identity, n, now, quota, outcome, degraded=degraded)

    def _take(
        self, p: _Pool, window: int, user: str, n: int, quota: Quota, now: float
    ) -> Outcome | None:
        ledger = self._ledgers[p.name]
        try:
            if p.lease is None:
                outcome = ledger.take(p.name, window, user, n, quota)
            else:
                want = self.lease_want(p, user, n, now, window)
                earlier = self.take_user_pending(p, window, user)
                try:
                    outcome = ledger.grant(  # type: ignore[attr-defined]
                        p.name, window, user, n, want, quota, earlier
                    )
                except Exception:
                    if earlier:  # not counted: the next flush carries them
                        self.return_pending(p, {window: {user: earlier}})
                    raise
        except Exception as exc:  # any store fault: never a 500 for the User
            self.store_failed(now, exc)
            return None
        if self.degraded_since is not None:
            self.store_ok(now)
        if p.lease is not None:
            outcome = self.leased(p, user, n, now, window, quota, outcome)
        return outcome

    def tick(self, now: float | None = None) -> None:
        """Recompute every pool from the offered rate of the last window (off the hot path)."""
        now = self.clock() if now is None else now
        with self._tick_lock:
            for p in self.pools.values():
                window = self.window_of(p, now)
                pending = self.take_pending(p)
                ledger, scale = self._ledgers[p.name], 1
                if p.name in self._shared and self.store_usable(now):
                    try:
                        counts = ledger.flush_and_read(p.name, pending, window)
                    except Exception as exc:  # keep deciding locally; the counts are kept
                        self.store_failed(now, exc)
                        self.return_pending(p, pending)
                        counts = self._fallback.flush_and_read(p.name, {}, window)
                        scale = p.policy.nodes
                    else:
                        self.store_ok(now)
                elif p.name in self._shared:
                    counts = self._fallback.flush_and_read(p.name, pending, window)
                    scale = p.policy.nodes
                else:
                    counts = ledger.flush_and_read(p.name, pending, window)
                self.absorb(p, now, counts, scale)

    def start(self) -> None:
        """Start the background recomputation thread (idempotent)."""
        with self._tick_lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="srtm-governor", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        period = min(p.policy.control_period or p.policy.window for p in self.pools.values())
        while not self._stop.wait(period):
            try:
                self.tick()
            except Exception:  # the loop must outlive any one bad recomputation
                log.exception("srtm: recomputation failed; will try again next period")

    def close(self) -> None:
        """Stop the background thread and release the storages."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for ledger in {id(led): led for led in self._ledgers.values()}.values():
            try:
                ledger.close()
            except Exception:  # closing a dead connection is not worth a crash
                log.debug("srtm: error closing %s", ledger.uri, exc_info=True)
