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
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from srtm.identity import (
    DEFAULT_POOL,
    FrontEndTrust,
    Identity,
    RequestView,
    Unidentified,
    header_identity_names,
    identify_by_headers,
    valid_user_id,
)

if TYPE_CHECKING:
    from srtm.gate import Decision, GateCore
    from srtm.identity import Identify, PoolOf

__all__ = [
    "CACHE_MAX",
    "DRAIN_LIMIT",
    "DRAIN_LIMIT_H2",
    "DRAIN_SECONDS",
    "Answer",
    "ExemptPaths",
    "Front",
    "Lean",
    "MetricsSink",
    "OnRefusal",
    "Response",
    "refusal",
    "status_line",
]

log: logging.Logger = logging.getLogger("srtm.middleware")

Response = tuple[int, list[tuple[str, str]], bytes]
_K = TypeVar("_K")
_V = TypeVar("_V")
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
#: The most entries each hot-path cache holds; one past it empties the cache (a flood of
#: distinct values costs a rebuild now and then, never unbounded memory).
CACHE_MAX = 4096

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


class Answer:
    """A response ready to send as often as needed: fields as text (WSGI) and bytes (ASGI).

    Built once and reused: a flood of refusals costs no JSON, formatting or encoding.
    Senders copy ``raw``/``headers`` before handing them on (a server or an outer
    middleware may append to the list it is given).
    """

    __slots__ = ("body", "headers", "line", "raw", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.line = status_line(status)
        self.headers = headers
        self.raw = [(k.lower().encode(), v.encode()) for k, v in headers]
        self.body = body

    @classmethod
    def of(cls, response: Response) -> Answer:
        """The Answer of a ``(status, headers, body)`` response."""
        return cls(*response)


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
_UNAVAILABLE_ANSWER = Answer.of(_UNAVAILABLE)


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
        # Whether the path is looked at at all (metrics exposition or exempt paths).
        self.paths_matter = metrics_path is not None or callable(exempt_paths) or bool(exempt_paths)
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
        #: Whether :meth:`check_workers` still has something to say (read per request).
        self.watch_workers = bool(self._local_pools)
        # Hot-path caches: refusal answers, and the RateLimit-Policy field as text and
        # bytes (the RateLimit field's value changes with every admission).
        self._refusals: dict[tuple[object, ...], Answer] = {}
        self._text_policy: dict[tuple[str, int, int], tuple[str, str]] = {}
        self._raw_policy: dict[tuple[str, int, int], tuple[bytes, bytes]] = {}
        self._prefixes: dict[str, tuple[str, bytes]] = {}  # pool -> its RateLimit prefix

    def resolve(self, request: RequestView) -> Identity | Response:
        """The request's Identity with its pool, or the response that refuses it (401/503)."""
        try:
            distrust = self.trust.refuses(request)
            if distrust is not None:
                return _unidentified(distrust)
        except Exception:  # a request object no server should build: still no 500
            self._identify_failed("401")
            return _unidentified("the request's Service User could not be established")
        return self.identity_of(request)

    def identity_of(self, request: RequestView) -> Identity | Response:
        """:meth:`resolve` past the trust check: identity, pool, and whether it may come in."""
        try:
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

    def unanswered(self, status: int) -> None:
        """Count a request refused before any decision (401, or 403 for an unknown User)."""
        if self.metrics is not None and status in (401, 403):
            self.metrics.unidentified(None)

    def refused(self, request: RequestView, decision: Decision) -> None:
        """Tell ``on_refusal`` of a refusal; a callback that raises is logged, never a 500."""
        if self.on_refusal is None:
            return
        try:
            self.on_refusal(request, decision)
        except Exception:
            self._on_refusal_failed("the refusal as decided")

    def decision_failed(self) -> Answer:
        """The answer when the gate itself raised: logged, and a 503 with Retry-After."""
        self._decide_failed("503")
        return _UNAVAILABLE_ANSWER

    def refusal(self, decision: Decision) -> Answer:
        """The 429/503 answer of a refused decision, built once per distinct refusal.

        The key holds every attribute :func:`refusal` reads, so the cached answer is the
        one it would build: a flood from one User is answered from here.
        """
        d = decision
        key: tuple[object, ...] = (
            d.user,
            d.pool,
            d.status,
            d.reason,
            d.retry_after,
            d.limit,
            d.window,
            d.remaining,
            d.reset,
        )
        found = self._refusals.get(key)
        if found is None:
            if len(self._refusals) >= CACHE_MAX:
                self._refusals.clear()
            found = self._refusals[key] = Answer.of(refusal(decision))
        return found

    def text_fields(self, decision: Decision) -> tuple[tuple[str, str], tuple[str, str]]:
        """The two RateLimit fields of an admitted decision (WSGI); the policy one cached."""
        d = decision
        policy = self._text_policy.get((d.pool, d.limit, d.window))
        if policy is None:
            policy = self._learn(d)[0]
        # Formatted each time (what Decision.rate_limit_headers does, from the pool's
        # prefix it gave): ``remaining`` counts down, so a value rarely repeats and a
        # cache of them would cost more in misses than it saves in hits.
        return policy, ("RateLimit", f"{self._prefixes[d.pool][0]};r={d.remaining};t={d.reset}")

    def raw_fields(self, decision: Decision) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
        """The two RateLimit fields as ASGI header bytes; the policy one cached."""
        d = decision
        policy = self._raw_policy.get((d.pool, d.limit, d.window))
        if policy is None:
            policy = self._learn(d)[1]
        # Formatted each time, as in text_fields.
        return policy, (
            b"ratelimit",
            b"%s;r=%d;t=%d" % (self._prefixes[d.pool][1], d.remaining, d.reset),
        )

    def _learn(self, d: Decision) -> tuple[tuple[str, str], tuple[bytes, bytes]]:
        """Cache the RateLimit-Policy field of ``d``, and its pool's RateLimit prefix."""
        policy, state = d.rate_limit_headers()
        # The RateLimit field is "<pool>;r=<remaining>;t=<reset>": what precedes ";r=".
        prefix = state[1][: state[1].rindex(";r=")]
        self._prefixes[d.pool] = (prefix, prefix.encode())
        key = (d.pool, d.limit, d.window)
        return (
            _remember(self._text_policy, key, policy),
            _remember(self._raw_policy, key, _raw(policy)),
        )

    def check_workers(self, multiprocess: bool = False) -> None:
        """Warn once when memory:// counters run in several worker processes."""
        if self._warned_workers or not self._local_pools:
            return
        forked = _forks[0] != self._forks_at_start
        if not (forked or multiprocess):
            return
        self._warned_workers = True
        self.watch_workers = False
        log.warning(
            "srtm: pools %s count in memory:// with nodes=1, but this is one of several "
            "worker processes (%s): each process admits the whole capacity, so together "
            "they admit several times it. Use a shared storage (redis://...) or set "
            "nodes to the number of workers",
            ", ".join(self._local_pools),
            "forked after the middleware was built" if forked else "wsgi.multiprocess",
        )


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
    """Store ``value`` in a bounded hot-path cache (emptied when full); return it."""
    if len(cache) >= CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


def _raw(field: tuple[str, str]) -> tuple[bytes, bytes]:
    """A header field as ASGI wants it: lower-case name, both as bytes."""
    return field[0].lower().encode(), field[1].encode()


class Lean:
    """The fast path's identity: the identity header values in, a remembered answer out.

    Used when the identity is the built-in header identity and one pool takes every
    request (no ``pool_of``). The answer then depends only on the trust inputs (peer and
    secret header) and the two identity header values, so the adapter reads just those
    from the raw request, and the answer for each raw (user, version) pair is computed
    once, by the general path itself (:meth:`Front.identity_of` on a view holding just
    those two headers: the same code decides), and remembered. ``decode``: the values
    are ASGI bytes (decoded as latin-1, as the general path does) rather than WSGI text.
    """

    __slots__ = (
        "_answers",
        "_by_peer",
        "_distrust",
        "decode",
        "front",
        "guarded",
        "lengths",
        "secret_name",
        "secret_raw",
        "trust",
        "user_name",
        "user_raw",
        "version_name",
        "version_raw",
    )

    def __init__(self, front: Front, user: str, version: str, *, decode: bool) -> None:
        self.front = front
        self.trust = front.trust
        self.guarded = front.trust.configured  # whether trust is checked at all
        self.user_name = user.lower()
        self.version_name = version.lower()
        self.secret_name = front.trust.secret_header.lower()
        # The same names as ASGI header bytes, for a scan of the raw list; the secret
        # header is read only where a secret is configured (as on the general path).
        self.user_raw = self.user_name.encode()
        self.version_raw = self.version_name.encode()
        self.secret_raw = self.secret_name.encode() if front.trust.secret is not None else None
        self.lengths = frozenset(
            len(name) for name in (self.user_raw, self.version_raw, self.secret_raw) if name
        )
        self.decode = decode
        self._answers: dict[tuple[object, object], Identity | Answer] = {}
        self._distrust: dict[str, Answer] = {}
        # Where no secret is configured: the answer per peer address (None: trusted).
        self._by_peer: dict[str | None, Answer | None] = {}

    @classmethod
    def of(cls, front: Front, *, decode: bool) -> Lean | None:
        """The fast path for ``front``, or None when its requests need the general path."""
        names = header_identity_names(front.identify)
        if names is None or front.pool_of is not None:
            return None
        user, version = names
        wanted = {user.lower(), version.lower()}
        if front.trust.secret is not None:
            wanted.add(front.trust.secret_header.lower())
        expected = 3 if front.trust.secret is not None else 2
        if len(wanted) < expected or not all(name.isascii() for name in wanted):
            return None  # names that collide (or need Unicode case rules): general path
        return cls(front, user, version, decode=decode)

    def distrusted(self, peer: str | None, secret: Any) -> Answer | None:
        """The 401 when the request did not come through a trusted front end, else None."""
        if self.secret_raw is None:  # no secret configured: the peer alone decides
            try:
                return self._by_peer[peer]
            except KeyError:
                return _remember(self._by_peer, peer, self._distrusted(peer, None))
        return self._distrusted(peer, secret)

    def _distrusted(self, peer: str | None, secret: Any) -> Answer | None:
        why = self.trust.refuses_raw(peer, self._text(secret))
        if why is None:
            return None
        found = self._distrust.get(why)
        if found is None:
            found = _remember(self._distrust, why, Answer.of(_unidentified(why)))
        return found

    def identity(self, user: Any, version: Any) -> Identity | Answer:
        """The Identity (or the 401/403/503 answer) for these raw header values."""
        key = (user, version)
        found = self._answers.get(key)
        if found is None:
            headers: dict[str, Any] = {}
            if user is not None:
                headers[self.user_name] = self._text(user)
            if version is not None:
                headers[self.version_name] = self._text(version)
            result = self.front.identity_of(RequestView(method="", path="", headers=headers))
            answer = result if isinstance(result, Identity) else Answer.of(result)
            found = _remember(self._answers, key, answer)
        return found

    def _text(self, value: Any) -> Any:
        # ASGI bytes are read as latin-1, as the general path reads them; a WSGI value is
        # passed as the environ holds it (whatever its type), as the general path does.
        return value.decode("latin-1") if self.decode and value is not None else value


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
