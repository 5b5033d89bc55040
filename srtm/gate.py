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
``1/nodes`` of every figure, and logs it loudly. Only the control loop probes the store
again (one probe at a time, the delay doubling per failed probe from 0.25 s to 1 s), so
no request waits on a store known to be down; the probe that succeeds carries the
node's local counts to the store. A storage fault never reaches the User as a 500.

Nodes sharing a store publish a heartbeat each control period (:mod:`srtm.ledger`'s
``SYNC_SCRIPT``). When fewer than ``nodes`` are live and some have lapsed (cut off, or
dead), the nodes still on the store take the lapsed nodes' ``1/nodes`` shares off their
cap and budget, so the admitted total over all nodes stays within capacity while a
node decides locally. The same round trip carries the pool's control values
(:meth:`GateCore.set_capacity`, :meth:`GateCore.set_shadow`) to every node.

Per-User state is bounded: Users not named in the policy who stay idle for
``IDLE_FORGET`` seconds are forgotten, their cumulative counts folded into the pool's
``retired`` total so that sums never go down.

:class:`GateCore` holds everything without I/O; :class:`Gate` (threads, sync storages)
and :class:`srtm.aio.gate.AsyncGate` (asyncio, ``limits.aio`` storages) repeat only
the I/O.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from srtm.governor import Governor
from srtm.lease import Lease
from srtm.ledger import (
    ADMITTED,
    CAPACITY,
    TOTAL,
    USER,
    Control,
    MemoryLedger,
    Outbox,
    Outcome,
    Quota,
    Reason,
    Synced,
    alive_ms,
    ledger_for,
    room,
)
from srtm.policy import TrafficPolicy, parse_duis_version

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from srtm.identity import Identity
    from srtm.lease import LeasePolicy
    from srtm.ledger import Ledger

__all__ = ["Decision", "Gate", "GateCore", "Reason", "normalise_pools"]

L = TypeVar("L")

log: logging.Logger = logging.getLogger("srtm.gate")

# The longest Retry-After advertised through an outage (capacity 0), seconds: long
# enough to thin the refusals fivefold, short enough that the top-ups waiting at
# recovery are not held back (the simulator's dsp-outage: 60 s cost 35 s of drain).
_OUTAGE_RETRY_MAX = 10.0

# Backoff between probes of a failed store (s): the first after this, doubling per
# failed probe up to the max, so a store that answers again is used within about a
# second of it (plus one control period).
_PROBE_FIRST, _PROBE_MAX = 0.25, 1.0

#: Seconds after which an idle User not named in the policy is forgotten.
IDLE_FORGET = 60.0


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


# Slotted but not frozen: a frozen dataclass sets its 13 fields through
# object.__setattr__, which cost 2.2 us a request (issue 11); plain stores cost a third.
# Equality and repr stay the dataclass's; the gate never changes a Decision it returned.
@dataclass(slots=True)
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
    seen: int = 0  # the last window in which the User offered a request

    def fold(self, other: UserStats) -> None:
        """Add ``other``'s counts to these (a forgotten User's, to the retired total)."""
        self.offered += other.offered
        self.admitted += other.admitted
        self.refused_user += other.refused_user
        self.refused_capacity += other.refused_capacity
        self.shadow_refused += other.shadow_refused
        self.cached_refusals += other.cached_refusals
        self.leased += other.leased

    def figures(self) -> dict[str, int]:
        """The counts an operator reads."""
        return {
            "offered": self.offered,
            "admitted": self.admitted,
            "refused_user": self.refused_user,
            "refused_capacity": self.refused_capacity,
            "shadow_refused": self.shadow_refused,
            "cached_refusals": self.cached_refusals,
            "leased": self.leased,
        }


def _nested() -> defaultdict[int, defaultdict[str, int]]:
    return defaultdict(lambda: defaultdict(int))


@dataclass
class _Pool:
    """One pool's policy, governor and locally decided counts (machinery)."""

    name: str
    policy: TrafficPolicy
    governor: Governor
    # offered requests decided locally (cached refusals, leases), not yet in the store
    pending: defaultdict[int, defaultdict[str, int]] = field(default_factory=_nested)
    # requests decided locally while the store was failed (offered; admitted, with the
    # pool total under TOTAL), carried to the store by the probe that finds it back
    unsent_offered: defaultdict[int, defaultdict[str, int]] = field(default_factory=_nested)
    unsent_admitted: defaultdict[int, defaultdict[str, int]] = field(default_factory=_nested)
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
    shadow: bool = False  # in force now: the policy's, or as set at run time
    live: int = 0  # nodes whose heartbeat the store last showed fresh
    missing: int = 0  # lapsed nodes whose share this node keeps off its figures
    control_rev: int = -1  # the store's control revision last applied
    publish: dict[str, str] = field(default_factory=dict)  # control values to publish
    retired: UserStats = field(default_factory=UserStats)  # forgotten Users' counts
    swept: int = -1  # window of the last sweep of idle Users
    # a refusal's status by the DUIS version a request names (429 or 503), computed once
    status_of: dict[str | None, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.window: float = self.policy.window
        self.window_s: int = max(1, math.ceil(self.window))
        self.shadow = self.policy.shadow


class GateCore:
    """Decision logic shared by the sync and async gates; no I/O."""

    def __init__(
        self,
        policy: TrafficPolicy | Mapping[str, TrafficPolicy],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pools: dict[str, _Pool] = {
            name: _Pool(name, p, Governor(p)) for name, p in normalise_pools(policy).items()
        }
        self.clock = clock
        self._lock = threading.Lock()
        self._probe_at = 0.0  # when the failed store may be probed again (0: healthy)
        self._probe_backoff = _PROBE_FIRST
        self.degraded_since: float | None = None
        #: This node's name in the store's heartbeats.
        self.node: str = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._shared: set[str] = set()  # pools counted in a shared store
        # Local counters: every pool of a memory store, and the fallback of shared ones.
        self.local: MemoryLedger = MemoryLedger(
            window=min(p.policy.window for p in self.pools.values())
        )

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
            quota = self.quota(p, user)
            if p.missing:
                quota = self.fenced(p, user, quota)
            p.quotas[user] = quota
        return quota

    def fenced(self, p: _Pool, user: str, quota: Quota) -> Quota:
        """``quota`` less the shares of the lapsed nodes, which may be deciding locally.

        A cut-off node admits at most its local share (:meth:`quota` with
        ``degraded=True``), so the nodes on the store keep that much of the cap and
        the budget off theirs for each lapsed node: the total stays within capacity.
        """
        share = self.quota(p, user, degraded=True)
        cap = max(0, quota.cap - p.missing * share.cap)
        budget = max(0, min(quota.budget - p.missing * share.budget, cap))
        return Quota(
            limit=min(quota.limit, cap),
            guarantee=min(quota.guarantee, cap),
            budget=budget,
            cap=cap,
        )

    # -- the decision --------------------------------------------------------------------

    def cached(self, p: _Pool, user: str, window: int, quota: Quota | None = None) -> Reason | None:
        """A refusal already known for this window, so no store round trip is needed.

        A User refused for its own sake stays refused while its quota is no larger in
        any figure: counts only grow within a window, so the store would refuse again.
        """
        if p.full == window:
            return CAPACITY
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
            return USER
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
                stats.seen = window
            return
        if outcome.reason is CAPACITY:
            p.full = window
        else:
            p.refused[user] = (window, quota if quota is not None else self.quota_for(p, user))
        with self._lock:
            stats = p.stats[user]
            stats.offered += n
            stats.admitted += admitted
            stats.seen = window
            if outcome.reason is CAPACITY:
                stats.refused_capacity += n - admitted
            elif outcome.reason is USER:
                stats.refused_user += n - admitted

    def record_cached(
        self, p: _Pool, user: str, window: int, n: int, reason: Reason, degraded: bool = False
    ) -> None:
        """Count a refusal answered from the cache; its offered count goes to the store later."""
        if degraded:
            self.local.count(p.name, window, user, n)
        with self._lock:
            if degraded:
                p.unsent_offered[window][user] += n
            else:
                p.pending[window][user] += n
            stats = p.stats[user]
            stats.offered += n
            stats.cached_refusals += n
            stats.seen = window
            if reason is CAPACITY:
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
            stats.seen = window
        outcome = Outcome(n, ADMITTED, used, total)
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
        return Outcome(n, ADMITTED, got.used - rest, got.total - rest)

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
        self.record_cached(p, identity.user, window, n, reason, degraded)
        # Nothing is left to the User in a window it was refused in: remaining is 0.
        return self.refused(p, identity, n, now, quota, 0, reason, 0, degraded)

    def count_admitted(self, p: _Pool, user: str, window: int, n: int) -> None:
        """Count ``n`` requests of ``user`` admitted in full (:meth:`record`'s common case)."""
        with self._lock:
            stats = p.stats[user]
            stats.offered += n
            stats.admitted += n
            stats.seen = window

    def admitted(
        self,
        p: _Pool,
        user: str,
        n: int,
        now: float,
        window: int,
        limit: int,
        remaining: int,
        degraded: bool,
    ) -> Decision:
        """The decision for ``n`` requests admitted in full, ``remaining`` left to the User."""
        w = p.window
        reset = math.ceil((window + 1) * w - now - 1e-9)
        return Decision(
            user,
            p.name,
            n,
            n,
            ADMITTED,
            200,
            None,
            limit if limit > 0 else 0,
            remaining,
            reset if reset > 1 else 1,
            p.window_s,
            False,
            degraded,
        )

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
        remaining = room(outcome.used, outcome.total, quota)
        if outcome.admitted >= n:
            window = math.floor(now / p.window)
            return self.admitted(p, identity.user, n, now, window, quota.limit, remaining, degraded)
        return self.refused(
            p, identity, n, now, quota, outcome.admitted, outcome.reason, remaining, degraded
        )

    def refused(
        self,
        p: _Pool,
        identity: Identity,
        n: int,
        now: float,
        quota: Quota,
        admitted: int,
        reason: Reason,
        remaining: int,
        degraded: bool,
    ) -> Decision:
        """The decision for ``n`` requests of which only ``admitted`` (< n) went through."""
        w = p.window
        to_reset = (math.floor(now / w) + 1) * w - now
        reset = math.ceil(to_reset - 1e-9)
        if reset < 1:
            reset = 1
        if reason is CAPACITY:
            status = 503
            stalled = quota.cap == 0
        else:
            version = identity.duis_version
            found = p.status_of.get(version)
            if found is None:
                if len(p.status_of) >= _CACHE_MAX:
                    p.status_of.clear()
                found = p.status_of[version] = 429 if _speaks_429(version, p.policy) else 503
            status = found
            stalled = quota.limit == 0
        if stalled:
            # When this User can next be admitted: with nothing to share out at all,
            # not before the next recomputation after the window. Through an outage
            # (capacity 0) nobody knows; the answer grows with the outage, as a
            # client's own backoff would, so a backlog is not resent every two seconds.
            policy = p.policy
            wait = max(to_reset, 0.0) + (policy.control_period or policy.window)
            if quota.cap == 0 and p.outage_since is not None:
                wait = max(wait, min(now - p.outage_since, _OUTAGE_RETRY_MAX))
            retry_after = max(1, math.ceil(wait - 1e-9))
        else:
            retry_after = reset  # the next window
        shadow = p.shadow
        if shadow:
            with self._lock:
                p.stats[identity.user].shadow_refused += n - admitted
            status, retry = 200, None
        else:
            retry = retry_after
        return Decision(
            identity.user,
            p.name,
            n,
            admitted,
            reason,
            status,
            retry,
            quota.limit if quota.limit > 0 else 0,
            remaining,
            reset,
            p.window_s,
            shadow,
            degraded,
        )

    # -- store health --------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """True while the shared store is taken for failed: decisions are local."""
        return self.degraded_since is not None

    def store_usable(self, now: float) -> bool:
        """True when the store is healthy or it is time to probe it again."""
        return self._probe_at == 0.0 or now >= self._probe_at

    def store_failed(self, at: float, exc: BaseException, *, probe: bool = False) -> None:
        """Switch to local decisions and say so loudly; back off before the next probe.

        ``at`` is when the failure was seen. Only a failed probe doubles the delay:
        requests that fail together at the start of an outage count as one failure.
        """
        with self._lock:
            if self.degraded_since is None:
                self.degraded_since = at
                self._probe_backoff = _PROBE_FIRST
                first = True
            else:
                first = False
                if probe:
                    self._probe_backoff = min(self._probe_backoff * 2, _PROBE_MAX)
            if first or probe:
                self._probe_at = at + self._probe_backoff
        if first:
            log.error(
                "srtm: the counter store failed (%s: %s); deciding locally, each node taking "
                "1/nodes of every pool's figures, until it answers again",
                type(exc).__name__,
                exc,
                extra={"srtm_event": "store_failed", "srtm_error": type(exc).__name__},
            )

    def store_ok(self, at: float) -> None:
        """A probe found the store answering: leave degraded mode."""
        with self._lock:
            since, self.degraded_since = self.degraded_since, None
            self._probe_at, self._probe_backoff = 0.0, _PROBE_FIRST
        if since is not None:
            seconds = max(0.0, at - since)
            log.warning(
                "srtm: the counter store answers again after %.1f s; deciding on it",
                seconds,
                extra={"srtm_event": "store_recovered", "srtm_degraded_seconds": seconds},
            )

    def record_local(self, p: _Pool, user: str, window: int, n: int, admitted: int) -> None:
        """Keep a decision taken on the local ledger for the store, once it is back."""
        with self._lock:
            p.unsent_offered[window][user] += n
            if admitted:
                counts = p.unsent_admitted[window]
                counts[user] += admitted
                counts[TOTAL] += admitted

    def outbox(self, p: _Pool, window: int) -> Outbox:
        """Everything this node owes the store for a pool, emptied (see :meth:`undo_outbox`)."""
        with self._lock:
            offered: dict[int, dict[str, int]] = {w: dict(c) for w, c in p.pending.items() if c}
            p.pending.clear()
            for w, counts in p.unsent_offered.items():
                if w >= window - 1 and counts:  # older windows are no longer read
                    into = offered.setdefault(w, {})
                    for user, n in counts.items():
                        into[user] = into.get(user, 0) + n
            admitted = {w: dict(c) for w, c in p.unsent_admitted.items() if w >= window - 1 and c}
            p.unsent_offered.clear()
            p.unsent_admitted.clear()
            publish, p.publish = p.publish, {}
        return Outbox(offered, admitted, publish)

    def undo_outbox(self, p: _Pool, out: Outbox) -> None:
        """Keep what a failed round trip did not deliver, for the probe that succeeds."""
        with self._lock:
            for target, source in (
                (p.unsent_offered, out.offered),
                (p.unsent_admitted, out.admitted),
            ):
                for w, counts in source.items():
                    for name, n in counts.items():
                        target[w][name] += n
            p.publish = {**out.publish, **p.publish}

    def prune_unsent(self, p: _Pool, window: int) -> None:
        """Drop local counts of windows the store no longer needs (a long outage)."""
        with self._lock:
            for kept in (p.unsent_offered, p.unsent_admitted):
                for w in [w for w in kept if w < window - 1]:
                    del kept[w]

    def synced(self, p: _Pool, got: Synced, at: float) -> tuple[dict[str, int], dict[str, int]]:
        """Apply a round trip's news: the store is back, who is alive, control values."""
        if self.degraded_since is not None:
            self.store_ok(at)
        missing = max(0, min(p.policy.nodes - got.live, got.lapsed))
        if missing != p.missing:
            log.warning(
                "srtm: pool %r: %d of %d nodes live, %d lapsed; keeping %d lapsed node "
                "share(s) off this node's figures",
                p.name,
                got.live,
                p.policy.nodes,
                got.lapsed,
                missing,
                extra={"srtm_event": "nodes", "srtm_pool": p.name, "srtm_missing": missing},
            )
            with self._lock:
                p.missing = missing
                p.quotas_epoch = -1  # cached quotas were cut for the old count
                p.full = -1
        p.live = got.live
        self.apply_control(p, got.control, at)
        return got.previous, got.current

    def apply_control(self, p: _Pool, control: Control, at: float) -> None:
        """Take the capacity and shadow mode published for the pool, if they changed."""
        if control.rev == p.control_rev:
            return
        p.control_rev = control.rev
        if control.capacity is not None and control.capacity != p.governor.capacity:
            self._apply_capacity(p, control.capacity, at)
            log.warning(
                "srtm: pool %r capacity set to %g SR/s through the store",
                p.name,
                control.capacity,
                extra={"srtm_event": "capacity", "srtm_pool": p.name},
            )
        if control.shadow is not None and control.shadow != p.shadow:
            p.shadow = control.shadow
            log.warning(
                "srtm: pool %r shadow mode %s through the store",
                p.name,
                "on" if control.shadow else "off",
                extra={"srtm_event": "shadow", "srtm_pool": p.name},
            )

    def sweep(self, p: _Pool, window: int) -> None:
        """Forget what idle Users left behind, so state follows the active Users.

        Every tick: refusals and leases of past windows. Every quarter of
        :data:`IDLE_FORGET`: the counts of Users not named in the policy who have not
        offered a request for that long, folded into ``p.retired``.
        """
        with self._lock:
            stale = [u for u, (w, _) in p.refused.items() if w < window]
            for user in stale:
                hit = p.refused.get(user)
                if hit is not None and hit[0] < window:
                    del p.refused[user]
            if p.leases:
                old = [u for u, lease in p.leases.items() if lease.window < window - 1]
                for user in old:
                    del p.leases[user]
        idle = max(2, math.ceil(IDLE_FORGET / p.window))
        if p.swept >= 0 and window - p.swept < max(1, idle // 4):
            return
        p.swept = window
        named = p.policy.allocations
        with self._lock:
            seen = [(u, s.seen) for u, s in p.stats.items()]
        gone = [u for u, last in seen if last < window - idle and u not in named]
        if not gone:
            return
        with self._lock:
            for user in gone:
                stats = p.stats.get(user)
                if stats is not None and stats.seen < window - idle:
                    p.retired.fold(stats)
                    del p.stats[user]

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
        offered = {user: count * (1.0 - phase) * scale for user, count in previous.items()}
        for user, count in current.items():
            offered[user] = offered.get(user, 0.0) + count * scale
        if phase:  # at a window's start the previous window counts in full already
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
            rate = sum(offered.values()) / p.policy.window
            event = "engaged" if p.governor.active else "released"
            log.warning(
                "srtm: traffic management %s in pool %r (offered %.0f SR/s, budget %.0f SR/s)",
                event,
                p.name,
                rate,
                p.governor.budget,
                # Fields for structured log handlers (JSON formatters read record.__dict__).
                extra={
                    "srtm_event": f"tm_{event}",
                    "srtm_pool": p.name,
                    "srtm_offered": rate,
                    "srtm_budget": p.governor.budget,
                },
            )

    def set_capacity(
        self, capacity: float, pool: str | None = None, *, now: float | None = None
    ) -> None:
        """Change a pool's capacity at run time (every pool when there is only one).

        0 is an outage: everything is refused with 503, and the Retry-After advertised
        grows with the outage's length (up to 10 s).
        On a pool backed by a shared store the value is also published: every node
        applies it within two control periods, and a node started later takes it up.
        """
        now = self.clock() if now is None else now
        for p in self._named(pool, "capacity"):
            self._apply_capacity(p, capacity, now)
            if p.name in self._shared:
                with self._lock:
                    p.publish["capacity"] = repr(float(capacity))

    def set_shadow(self, on: bool, pool: str | None = None) -> None:
        """Turn a pool's shadow mode on or off at run time (published like the capacity).

        In shadow mode the gate decides and reports but refuses nothing: a dark launch.
        """
        for p in self._named(pool, "shadow mode"):
            p.shadow = bool(on)
            if p.name in self._shared:
                with self._lock:
                    p.publish["shadow"] = "1" if on else "0"

    def _named(self, pool: str | None, what: str) -> list[_Pool]:
        if pool is not None:
            return [self.pools[pool]]
        if len(self.pools) > 1:
            raise ValueError(f"several pools: name the one whose {what} changes")
        return list(self.pools.values())

    def _apply_capacity(self, p: _Pool, capacity: float, now: float) -> None:
        """Put a capacity in force on this node (see :meth:`set_capacity`)."""
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

    def snapshot(self, *, users: bool = True) -> dict[str, Any]:
        """Counters and state an operator can read (JSON-serialisable).

        Per pool, ``users`` holds every User seen lately (only those named in the
        policy with ``users=False``); ``other`` sums the Users not named in the policy,
        forgotten ones included (``retired``), so it never goes down. Its size follows
        the Users active lately, never every identity ever seen, and the request path
        waits only for a list copy.
        """
        pools: dict[str, Any] = {}
        for name, p in self.pools.items():
            gov = p.governor
            named = p.policy.allocations
            with self._lock:  # one consistent cut: the sweep moves counts under this lock
                items = list(p.stats.items())
                retired = p.retired.figures()
            other = UserStats()
            other.fold(UserStats(**retired))
            figures_of: dict[str, dict[str, Any]] = {}
            for user, stats in items:
                if user not in named:
                    other.fold(stats)
                    if not users:
                        continue
                figures_of[user] = stats.figures()
            demand = gov.demand
            for user, figures in figures_of.items():
                figures["demand"] = round(demand.get(user, 0.0), 3)
                limit = gov.limit(user)
                figures["limit"] = None if limit is None else round(limit, 3)
            pools[name] = {
                "active": gov.active,
                "shadow": p.shadow,
                "capacity": gov.capacity,
                "budget": gov.budget,
                "offered_rate": round(gov.offered, 3),  # named Users and the collective
                "nodes_live": p.live if name in self._shared else None,
                "nodes_fenced": p.missing,
                "users": figures_of,
                "other": other.figures(),
                "retired": retired,
            }
        return {"degraded": self.degraded_since is not None, "node": self.node, "pools": pools}


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
        ledger_factory: Callable[[TrafficPolicy], Ledger] | None = None,
    ) -> None:
        """Build the pools and one ledger per storage URI.

        ``ledger_factory`` replaces the ledger built from a policy's storage URI (the
        simulator passes one that counts in bulk); it is called once per distinct URI.
        Whether a pool is shared across nodes still follows its policy's storage scheme.
        """
        super().__init__(policy, clock=clock)
        self._ledgers: dict[str, Ledger] = self.ledger_per_pool(
            lambda policy: policy.sync_storage_uri, ledger_factory or ledger_for
        )
        self._shared = {n for n, p in self.pools.items() if p.policy.scheme != "memory"}
        self.use_leases(self._shared)
        self._background = background
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._tick_lock = threading.Lock()

    def decide(self, identity: Identity, n: int = 1, *, now: float | None = None) -> Decision:
        """Admit or refuse ``n`` requests of ``identity`` (KeyError for an unknown pool)."""
        if self._background and self._thread is None:
            self.start()
        p = self.pools[identity.pool]
        real = now is None
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
            ledger = self._ledgers[p.name]
            if type(ledger) is MemoryLedger:  # admitted in full: no Outcome to build
                left = ledger.admit(p.name, window, user, n, quota)
                if left >= 0:
                    self.count_admitted(p, user, window, n)
                    return self.admitted(p, user, n, now, window, quota.limit, left, False)
            outcome = ledger.take(p.name, window, user, n, quota)
            self.record(p, user, window, n, outcome, quota)
            return self.decision(p, identity, n, now, quota, outcome, degraded=False)
        degraded = self.degraded_since is not None
        quota = self.quota(p, user, degraded=True) if degraded else self.quota_for(p, user)
        if p.lease is not None and not degraded:
            leased = self.from_lease(p, identity, n, now, window, quota)
            if leased is not None:
                return leased
        cached = self.cached(p, user, window, quota)
        if cached is not None:
            return self.refuse_cached(p, identity, n, now, window, quota, cached, degraded)
        taken = None if degraded else self._take(p, window, user, n, quota, now, real)
        if taken is not None:
            outcome = taken
        else:  # the store failed, now or earlier: decide locally
            degraded = True
            quota = self.quota(p, user, degraded=True)
            outcome = self.local.take(p.name, window, user, n, quota)
            self.record_local(p, user, window, n, outcome.admitted)
        self.record(p, user, window, n, outcome, quota)
        return self.decision(p, identity, n, now, quota, outcome, degraded=degraded)

    def _take(
        self, p: _Pool, window: int, user: str, n: int, quota: Quota, now: float, real: bool
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
            self.store_failed(self.clock() if real else now, exc)
            return None
        if p.lease is not None:
            outcome = self.leased(p, user, n, now, window, quota, outcome)
        return outcome

    def tick(self, now: float | None = None) -> None:
        """Recompute every pool from the offered rate of the last window (off the hot path).

        On a shared store this is also the node's heartbeat, the carrier of its local
        counts and control values, and, while the store is failed, the only probe.
        """
        real = now is None
        now = self.clock() if now is None else now
        with self._tick_lock:
            for p in self.pools.values():
                window = self.window_of(p, now)
                ledger, scale = self._ledgers[p.name], 1
                if p.name not in self._shared:
                    counts = ledger.flush_and_read(p.name, self.take_pending(p), window)
                elif self.store_usable(now):
                    got = self._sync(p, window, real, now)
                    if got is None:
                        counts, scale = (
                            self.local.flush_and_read(p.name, {}, window),
                            p.policy.nodes,
                        )
                    else:
                        counts = got
                else:
                    self.prune_unsent(p, window)
                    counts, scale = self.local.flush_and_read(p.name, {}, window), p.policy.nodes
                self.absorb(p, now, counts, scale)
                self.sweep(p, window)

    def _sync(
        self, p: _Pool, window: int, real: bool, now: float
    ) -> tuple[dict[str, int], dict[str, int]] | None:
        """One round trip for a shared pool; None (and local decisions) if it failed."""
        ledger = self._ledgers[p.name]
        sync = getattr(ledger, "sync", None)
        out = self.outbox(p, window)
        try:
            if sync is None:  # a ledger without heartbeats: counts only
                counts: tuple[dict[str, int], dict[str, int]] = ledger.flush_and_read(
                    p.name, out.offered, window
                )
            else:
                got: Synced = sync(
                    p.name, window, self.node, alive_ms(self._period(p)), out, p.policy.window
                )
        except Exception as exc:  # keep deciding locally; the counts are kept
            self.undo_outbox(p, out)
            self.store_failed(self.clock() if real else now, exc, probe=True)
            return None
        at = self.clock() if real else now
        if sync is None:
            if self.degraded_since is not None:
                self.store_ok(at)
            return counts
        return self.synced(p, got, at)

    @staticmethod
    def _period(p: _Pool) -> float:
        return p.policy.control_period or p.policy.window

    def start(self) -> None:
        """Start the background recomputation thread (idempotent)."""
        with self._tick_lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="srtm-governor", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        period = min(self._period(p) for p in self.pools.values())
        while not self._stop.wait(period):
            try:
                self.tick()
            except Exception:  # the loop must outlive any one bad recomputation
                log.exception("srtm: recomputation failed; will try again next period")

    def close(self) -> None:
        """Stop the background thread, leave the live nodes and release the storages."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for name in self._shared:
            leave = getattr(self._ledgers[name], "leave", None)
            if leave is not None and self.degraded_since is None:
                try:
                    leave(name, self.node)
                except Exception:  # a dead store: the heartbeat lapses instead
                    log.debug("srtm: could not leave the live nodes", exc_info=True)
        for ledger in {id(led): led for led in self._ledgers.values()}.values():
            try:
                ledger.close()
            except Exception:  # closing a dead connection is not worth a crash
                log.debug("srtm: error closing %s", ledger.uri, exc_info=True)
