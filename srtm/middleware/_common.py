"""What the ASGI and WSGI adapters share: trust, identity, exemptions and responses.

Nothing here moves bytes; the adapters differ only in how they read a request and
write a response. Every path through :meth:`Front.resolve` ends in an Identity or a
response, never an exception: whatever bytes the headers hold, the gateway answers
200, 401, 429 or 503, never 500.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol

from srtm.identity import (
    DEFAULT_POOL,
    FrontEndTrust,
    Identity,
    Unidentified,
    identify_by_headers,
    valid_user_id,
)

if TYPE_CHECKING:
    from srtm.gate import Decision, GateCore
    from srtm.identity import Identify, PoolOf, RequestView

__all__ = [
    "DRAIN_LIMIT",
    "DRAIN_LIMIT_H2",
    "DRAIN_SECONDS",
    "ExemptPaths",
    "Front",
    "MetricsSink",
    "OnRefusal",
    "Response",
    "refusal",
    "status_line",
]

log: logging.Logger = logging.getLogger("srtm.middleware")

Response = tuple[int, list[tuple[str, str]], bytes]
#: Called with the request and the Decision whenever the gate refuses a request for a
#: User's or the system's sake (shadow refusals included: the request then goes on).
OnRefusal = Callable[["RequestView", "Decision"], object]


class MetricsSink(Protocol):
    """What the middleware reports to: :class:`srtm.metrics.GatewayMetrics` fits it."""

    gate: GateCore

    def observe(self, decision: Decision, seconds: float) -> None: ...
    def unidentified(self, pool: str | None = None) -> None: ...
    def render(self, accept: str | None = None) -> tuple[bytes, str]: ...


#: Paths that skip identification: exact paths and their sub-paths, or a predicate.
ExemptPaths = Collection[str] | Callable[[str], bool]

#: The most of a refused request's body read (and discarded) so the connection stays
#: usable for the next request; past it, an HTTP/1.1 connection is closed instead.
DRAIN_LIMIT = 64 * 1024
#: The same over HTTP/2, where a connection cannot be closed for one stream.
DRAIN_LIMIT_H2 = 1024 * 1024
#: The longest a refusal waits for that body (a client trickling it is cut off).
DRAIN_SECONDS = 5.0

# Forks seen by this process since import: a middleware built before a fork (gunicorn
# --preload, multiprocessing) sees the count change in the worker. A hook, not a
# getpid() per request.
_forks = [0]


def _count_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)


def status_line(status: int) -> str:
    """``429 Too Many Requests`` and the like, for WSGI's start_response."""
    return f"{status} {HTTPStatus(status).phrase}"


def _json(status: int, body: dict[str, object]) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    return status, headers, data


# Why a fault in srtm's own decision is answered 503 with Retry-After rather than by
# admitting the request: every User's client already treats such a 503 as "not
# processed, wait and retry" (the DCC gateway sends it before DUIS 4.1), so nothing is
# lost; admitting would let a bug switch off the cap that protects the back end for
# everyone, which is what the gateway exists to prevent. Identification faults are a
# 401: an identity nobody could establish is not a User.
_UNAVAILABLE = _json(
    503,
    {
        "error": "unavailable",
        "status": 503,
        "retry_after": 1,
        "detail": "traffic management could not decide; retry after the given delay",
    },
)
_UNAVAILABLE[1].append(("Retry-After", "1"))


# A User the policy does not name, in a pool whose policy says unknown_users="refuse":
# identified, so not 401, but not allowed in (counted against nobody).
_UNKNOWN_USER = _json(
    403,
    {
        "error": "unknown-user",
        "status": 403,
        "detail": "this Service User is not named in the gateway's traffic policy",
    },
)


def _metrics_for(
    gate: GateCore, metrics: MetricsSink | None, metrics_path: str | None
) -> MetricsSink | None:
    """The metrics given, or GatewayMetrics built for ``gate`` when only a path is."""
    if metrics is None:
        if metrics_path is None:
            return None
        from srtm.metrics import GatewayMetrics  # MissingExtraError names srtm[prometheus]

        return GatewayMetrics(gate)
    if metrics.gate is not gate:
        raise ValueError("metrics must be built for the middleware's own gate")
    return metrics


class _Once:
    """Log an unexpected exception with its traceback, then at most once a minute."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.lock = threading.Lock()
        self.next_at = 0.0
        self.suppressed = 0

    def __call__(self, answer: str) -> None:
        now = time.monotonic()
        with self.lock:
            if now < self.next_at:
                self.suppressed += 1
                return
            suppressed, self.suppressed, self.next_at = self.suppressed, 0, now + 60.0
        log.exception(
            "srtm: %s failed; answering %s (%d more such failures since the last report)",
            self.what,
            answer,
            suppressed,
        )


class Front:
    """Trust, identity, pool choice and responses: everything but how bytes move."""

    def __init__(
        self,
        gate: GateCore,
        *,
        identify: Identify | None,
        pool_of: PoolOf | None,
        exempt_paths: ExemptPaths,
        trust: FrontEndTrust,
        metrics: MetricsSink | None = None,
        metrics_path: str | None = None,
        on_refusal: OnRefusal | None = None,
    ) -> None:
        self.gate = gate
        self.metrics = _metrics_for(gate, metrics, metrics_path)
        if metrics_path is not None and (
            not isinstance(metrics_path, str) or not metrics_path.startswith("/")
        ):
            raise ValueError(
                f"metrics_path must be an absolute path such as '/metrics', got {metrics_path!r}"
            )
        self.metrics_path = metrics_path
        self.on_refusal = on_refusal
        self._on_refusal_failed = _Once("the on_refusal callback")
        # Pools whose policy refuses Users it does not name (403), checked per request.
        self._refuse_unknown = {
            name: p.policy for name, p in gate.pools.items() if p.policy.unknown_users == "refuse"
        }
        self.identify = identify or identify_by_headers()
        self.pool_of = pool_of
        self.exempt = _exempt_matcher(exempt_paths)
        if pool_of is None and len(gate.pools) > 1:
            raise ValueError("several pools need a pool_of callable to choose one per request")
        self.only_pool = next(iter(gate.pools)) if pool_of is None else DEFAULT_POOL
        reads_headers = bool(getattr(self.identify, "reads_headers", True))
        self.trust = trust if reads_headers else FrontEndTrust()
        if reads_headers and not trust.configured:
            log.warning(
                "srtm: SERVICE USER IDENTITY IS NOT PROTECTED: identity comes from request "
                "headers, and no trusted front end is configured, so any client that reaches "
                "this server can claim any User. Pass trusted_peers=[...] (the addresses of "
                "the TLS-terminating front ends) and/or front_end_secret=..., or "
                'trusted_peers=["*"] if only the front end can reach this server '
                "(docs/trust.md)"
            )
        self._identify_failed = _Once("the identify callable")
        self._decide_failed = _Once("the traffic decision")
        self._forks_at_start = _forks[0]
        self._local_pools = sorted(
            name
            for name, p in gate.pools.items()
            if p.policy.scheme == "memory" and p.policy.nodes == 1
        )
        self._warned_workers = False

    def resolve(self, request: RequestView) -> Identity | Response:
        """The request's Identity with its pool, or the response that refuses it (401/503)."""
        try:
            distrust = self.trust.refuses(request)
            if distrust is not None:
                return _unidentified(distrust)
            identity = self.identify(request)
        except Unidentified as exc:
            return _unidentified(str(exc))
        except Exception:  # a custom identify that breaks must not become a 500
            self._identify_failed("401")
            return _unidentified("the request's Service User could not be established")
        if not isinstance(identity, Identity) or not valid_user_id(identity.user):
            return _unidentified("the request's Service User could not be established")
        try:
            pool = self.only_pool if self.pool_of is None else self.pool_of(request)
        except Exception:
            self._decide_failed("503")
            return _UNAVAILABLE
        if pool not in self.gate.pools:
            log.error("srtm: pool_of chose %r, which is not configured; answering 503", pool)
            return _UNAVAILABLE
        if identity.pool != pool:
            identity = Identity(identity.user, identity.duis_version, pool)
        strict = self._refuse_unknown.get(pool) if self._refuse_unknown else None
        if strict is not None and not strict.named(identity.user):
            return _UNKNOWN_USER
        return identity

    def unanswered(self, response: Response) -> None:
        """Count a request refused before any decision (401, or 403 for an unknown User)."""
        if self.metrics is not None and response[0] in (401, 403):
            self.metrics.unidentified(None)

    def refused(self, request: RequestView, decision: Decision) -> None:
        """Tell ``on_refusal`` of a refusal; a callback that raises is logged, never a 500."""
        if self.on_refusal is None:
            return
        try:
            self.on_refusal(request, decision)
        except Exception:
            self._on_refusal_failed("the refusal as decided")

    def decision_failed(self) -> Response:
        """The answer when the gate itself raised: logged, and a 503 with Retry-After."""
        self._decide_failed("503")
        return _UNAVAILABLE

    def check_workers(self, multiprocess: bool = False) -> None:
        """Warn once when memory:// counters run in several worker processes."""
        if self._warned_workers or not self._local_pools:
            return
        forked = _forks[0] != self._forks_at_start
        if not (forked or multiprocess):
            return
        self._warned_workers = True
        log.warning(
            "srtm: pools %s count in memory:// with nodes=1, but this is one of several "
            "worker processes (%s): each process admits the whole capacity, so together "
            "they admit several times it. Use a shared storage (redis://...) or set "
            "nodes to the number of workers",
            ", ".join(self._local_pools),
            "forked after the middleware was built" if forked else "wsgi.multiprocess",
        )


def _exempt_matcher(exempt: ExemptPaths) -> Callable[[str], bool]:
    """One test for a path: the predicate given, or exact paths with their sub-paths."""
    if callable(exempt):
        predicate = exempt

        def by_predicate(path: str) -> bool:
            try:
                return bool(predicate(path)) and not _dot_segments(path)
            except Exception:  # a broken predicate exempts nothing: identification runs
                log.exception("srtm: the exempt_paths predicate failed for %r", path)
                return False

        return by_predicate
    if isinstance(exempt, str):
        raise ValueError("exempt_paths must be a collection of paths, not one string")
    exact: set[str] = set()
    prefixes: list[str] = []
    for entry in exempt:
        if not isinstance(entry, str) or not entry.startswith("/") or _dot_segments(entry):
            raise ValueError(f"exempt_paths: {entry!r} is not an absolute path such as '/health'")
        base = entry.rstrip("/")
        if not base:
            raise ValueError("exempt_paths: '/' would exempt every path from identification")
        exact.add(base)
        prefixes.append(base + "/")
    starts = tuple(prefixes)

    def by_paths(path: str) -> bool:
        if path in exact:
            return True
        return bool(starts) and path.startswith(starts) and not _dot_segments(path)

    return by_paths


def _dot_segments(path: str) -> bool:
    # "/health/../sr" must not pass as exempt where something downstream normalises it.
    return "/." in path and any(seg in (".", "..") for seg in path.split("/"))


def _unidentified(detail: str) -> Response:
    status, headers, body = _json(401, {"error": "unidentified", "detail": detail})
    headers.append(("WWW-Authenticate", 'Mutual-TLS realm="srtm"'))
    return status, headers, body


def refusal(decision: Decision) -> Response:
    """The 429/503 response of a refused request."""
    body = decision.refusal_body()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *decision.refusal_headers(),
    ]
    return decision.status, headers, body


def content_length(value: str | None) -> int | None:
    """A Content-Length header's value as an int, or None when absent or not ASCII digits."""
    if value is None:
        return None
    text = value.strip(" \t")
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)
