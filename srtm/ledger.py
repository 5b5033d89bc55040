"""Windowed counters on a ``limits`` storage: the only state a decision needs.

For each pool and fixed window (``floor(now / window)``, the same on every node) the
ledger keeps the requests each User offered, the requests it had admitted, and the
pool's admitted total. One decision is one atomic step, :func:`admit_count`: on Redis a
Lua script run through the storage's own client (one round trip), in memory a few
dict operations (a ``limits`` MemoryStorage would cost two locked calls with expiry
bookkeeping for what the process can count itself). Counters are keyed by pool,
window and User, never by the limit, so a User whose limit changes mid-window keeps
its count (a ``limits`` ``RateLimitItem`` key would restart from zero).

``limits`` has no multi-key or compare-and-increment call, so the step is written
here; the Python function and the Lua script are twins and a test holds them equal.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from limits.storage import RedisStorage, storage_from_string

if TYPE_CHECKING:
    from collections.abc import Mapping

    from srtm.policy import TrafficPolicy

__all__ = [
    "Control",
    "Ledger",
    "MemoryLedger",
    "Outcome",
    "Quota",
    "Reason",
    "RedisLedger",
    "Synced",
    "admit_count",
    "grant_count",
    "ledger_for",
    "redis_keys",
    "room",
    "store_keys",
]

#: The pool total's field in the admitted hash (User IDs are never empty).
TOTAL = ""


class Reason(enum.IntEnum):
    """Why (part of) a request was refused; ADMITTED when it was not."""

    ADMITTED = 0
    USER = 1  # over the User's limit, or over its guarantee once the budget is spent
    CAPACITY = 2  # the pool's hard cap: refused for the system's sake


# The members as plain names for the hot paths: ``Reason.USER`` goes through the enum's
# metaclass each time (60 ns here, a tenth of an in-memory decision's counting).
ADMITTED, USER, CAPACITY = Reason.ADMITTED, Reason.USER, Reason.CAPACITY


@dataclass(frozen=True, slots=True)
class Quota:
    """One User's figures for one window, in requests (not SR/s)."""

    limit: int  # most this User may have admitted in the window
    guarantee: int  # admitted even once the budget is spent
    budget: int  # pool total past which only guarantees are admitted
    cap: int  # pool total that is never exceeded


@dataclass(slots=True)  # not frozen: built per store decision, frozen costs (issue 11)
class Outcome:
    """How many of the offered requests were admitted, and the counts after."""

    admitted: int
    reason: Reason  # why the rest were refused (ADMITTED if none was)
    used: int  # this User's admitted count in the window, after
    total: int  # the pool's admitted count in the window, after


def room(used: int, total: int, quota: Quota) -> int:
    """Requests a User may still have admitted in the window on these counts.

    A request goes through while the User is under its limit, the pool under its cap,
    and either the pool under its budget or the User under its guarantee. Once the
    admitted total reaches the budget within a window, traffic management is in force
    for that window even before the governor has seen it: a flood is stopped at the
    threshold, not at capacity.
    """
    r = min(
        quota.limit - used, quota.cap - total, max(quota.budget - total, quota.guarantee - used)
    )
    return r if r > 0 else 0


def grant_count(n: int, want: int, used: int, total: int, quota: Quota) -> tuple[int, Reason]:
    """How many of ``want`` admissions to grant when ``n`` (<= want) are needed now.

    More than ``n`` is a lease (:mod:`srtm.lease`); the reason speaks for the ``n``
    requests at hand: ADMITTED when all of them are covered.
    """
    k = min(want, room(used, total, quota))
    if k >= n:
        return k, ADMITTED
    # A full pool is full for everyone: that refusal is the system's, whatever the User did.
    if total + k >= quota.cap:
        return k, CAPACITY
    return k, USER


def admit_count(n: int, used: int, total: int, quota: Quota) -> tuple[int, Reason]:
    """How many of ``n`` requests to admit given the counts so far (see :func:`room`)."""
    return grant_count(n, n, used, total, quota)


def redis_keys(pool: str, window: int) -> tuple[str, str]:
    """(offered hash, admitted hash) of a pool's window; one hash tag keeps them on one slot."""
    return f"srtm:{{{pool}}}:{window}:offered", f"srtm:{{{pool}}}:{window}:admitted"


# The twin of admit_count, plus counting the offered requests, in one round trip. It
# answers "k reason used total" as one string: redis-py reads a 4-item array reply for
# 11 us more than one bulk string (of a ~95 us call here; see decode_outcome). With
# an 8th argument ``want`` (>= n) it grants up to ``want`` admissions at once, a lease
# (grant_count is its twin); the reason speaks for the n requests at hand.
# A 9th, ``earlier``, adds offered requests this node decided locally since (served
# from its last block, or refused from its cache), so they reach the store now.
# KEYS: offered hash, admitted hash.
# ARGV: user, n, limit, guarantee, budget, cap, ttl[, want[, earlier]].
TAKE_SCRIPT = """
local user = ARGV[1]
local n = tonumber(ARGV[2])
local limit, guarantee = tonumber(ARGV[3]), tonumber(ARGV[4])
local budget, cap, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local want = tonumber(ARGV[8] or ARGV[2])
local offered = n + tonumber(ARGV[9] or '0')
if redis.call('HINCRBY', KEYS[1], user, offered) == offered then
  redis.call('EXPIRE', KEYS[1], ttl)
end
local used = tonumber(redis.call('HGET', KEYS[2], user) or '0')
local total = tonumber(redis.call('HGET', KEYS[2], '') or '0')
local k = math.min(want, limit - used, cap - total, math.max(budget - total, guarantee - used))
if k < 0 then k = 0 end
if k > 0 then
  used = redis.call('HINCRBY', KEYS[2], user, k)
  total = redis.call('HINCRBY', KEYS[2], '', k)
  if total == k then redis.call('EXPIRE', KEYS[2], ttl) end
end
local reason = 0
if k < n then
  if total >= cap then reason = 2 else reason = 1 end
end
return string.format('%d %d %d %d', k, reason, used, total)
"""

# TAKE_SCRIPT for several Users of one pool and window in one call (the async gate's
# batches): each entry is decided in turn exactly as its own TAKE_SCRIPT call would be,
# so a batch decides what the same calls one at a time would.
# KEYS: offered hash, admitted hash.
# ARGV: ttl, then per entry: user, n, limit, guarantee, budget, cap, want, earlier.
# Returns "k reason used total" per entry, all in one space-separated string.
TAKE_MANY_SCRIPT = """
local ttl = tonumber(ARGV[1])
local out = {}
local total = tonumber(redis.call('HGET', KEYS[2], '') or '0')
for i = 2, #ARGV, 8 do
  local user = ARGV[i]
  local n = tonumber(ARGV[i + 1])
  local limit, guarantee = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local budget, cap = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  local want = tonumber(ARGV[i + 6])
  local offered = n + tonumber(ARGV[i + 7])
  if redis.call('HINCRBY', KEYS[1], user, offered) == offered then
    redis.call('EXPIRE', KEYS[1], ttl)
  end
  local used = tonumber(redis.call('HGET', KEYS[2], user) or '0')
  local k = math.min(want, limit - used, cap - total, math.max(budget - total, guarantee - used))
  if k < 0 then k = 0 end
  if k > 0 then
    used = redis.call('HINCRBY', KEYS[2], user, k)
    total = redis.call('HINCRBY', KEYS[2], '', k)
    if total == k then redis.call('EXPIRE', KEYS[2], ttl) end
  end
  local reason = 0
  if k < n then
    if total >= cap then reason = 2 else reason = 1 end
  end
  out[#out + 1] = string.format('%d %d %d %d', k, reason, used, total)
end
return table.concat(out, ' ')
"""

# Add counted-locally offered requests to some windows, then read the previous and the
# current window back. KEYS[1], KEYS[2]: offered hashes to read; KEYS[3..]: to add to.
# ARGV: ttl, then per added key: m, then m pairs of (user, count).
FLUSH_SCRIPT = """
local ttl = tonumber(ARGV[1])
local i = 2
for k = 3, #KEYS do
  local m = tonumber(ARGV[i]); i = i + 1
  for _ = 1, m do
    redis.call('HINCRBY', KEYS[k], ARGV[i], tonumber(ARGV[i + 1])); i = i + 2
  end
  redis.call('EXPIRE', KEYS[k], ttl)
end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"""


def store_keys(pool: str) -> tuple[str, str]:
    """(nodes sorted set, control hash) of a pool: the same hash tag as its counters."""
    return f"srtm:{{{pool}}}:nodes", f"srtm:{{{pool}}}:control"


# A node's control-period round trip: publish its heartbeat (score: the Redis server's
# own clock in ms, so node clocks never matter), forget nodes silent for ``keep`` ms,
# count live nodes and lapsed ones, publish control values if given (bumping ``rev``),
# add counted-locally requests (offered and admitted) to some windows, then read the
# previous and current offered counts and the control hash back.
# KEYS: offered(previous), offered(current), nodes, control, then hashes to add to.
# ARGV: ttl, node, alive_ms, keep_ms, window, nc, nc pairs (field, value),
#       then per added key: m, then m pairs of (field, count).
SYNC_SCRIPT = """
local ttl = tonumber(ARGV[1])
local node, alive, keep = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if node ~= '' then redis.call('ZADD', KEYS[3], now, node) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - keep)
redis.call('PEXPIRE', KEYS[3], keep)
local live = redis.call('ZCOUNT', KEYS[3], now - alive, '+inf')
local lapsed = redis.call('ZCOUNT', KEYS[3], '-inf', '(' .. (now - alive))
redis.call('HSET', KEYS[4], 'window', ARGV[5])
local nc = tonumber(ARGV[6])
local i = 7
if nc > 0 then
  for _ = 1, nc do
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]); i = i + 2
  end
  redis.call('HINCRBY', KEYS[4], 'rev', 1)
end
for k = 5, #KEYS do
  local m = tonumber(ARGV[i]); i = i + 1
  for _ = 1, m do
    redis.call('HINCRBY', KEYS[k], ARGV[i], tonumber(ARGV[i + 1])); i = i + 2
  end
  redis.call('EXPIRE', KEYS[k], ttl)
end
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), live, lapsed,
  redis.call('HGETALL', KEYS[4])}
"""

# Publish control values from outside any gate (``srtm set-capacity``).
# KEYS: control hash. ARGV: pairs of (field, value).
PUBLISH_SCRIPT = """
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return redis.call('HINCRBY', KEYS[1], 'rev', 1)
"""

#: A node whose heartbeat is older than this many ms is taken for cut off or dead,
#: at most (the control period sets it: see :func:`alive_ms`).
_ALIVE_MAX = 2.0
#: Lapsed nodes are remembered this long (s), then taken for gone for good.
LAPSED_KEEP = 600.0


def alive_ms(control_period: float) -> int:
    """How long a heartbeat counts: four control periods, within 1 to 2 seconds."""
    return int(1000 * min(_ALIVE_MAX, max(1.0, 4 * control_period)))


@dataclass(frozen=True, slots=True)
class Control:
    """Values published for every node of a pool (``rev`` 0: nothing published yet)."""

    rev: int = 0
    capacity: float | None = None
    shadow: bool | None = None
    window: float | None = None

    @classmethod
    def parse(cls, fields: Mapping[str, str]) -> Control:
        """From the control hash's fields; anything unreadable counts as not published."""

        def number(name: str) -> float | None:
            try:
                value = float(fields[name])
            except (KeyError, ValueError):
                return None
            return value if value >= 0 and value != float("inf") else None

        shadow = fields.get("shadow")
        rev = number("rev")
        return cls(
            rev=int(rev) if rev is not None else 0,
            capacity=number("capacity"),
            shadow=None if shadow not in ("0", "1") else shadow == "1",
            window=number("window"),
        )


@dataclass(frozen=True, slots=True)
class Synced:
    """What one control-period round trip brought back."""

    previous: dict[str, int]  # offered counts of the previous window, all nodes
    current: dict[str, int]  # offered counts of the current window so far
    live: int  # nodes whose heartbeat is fresh (this one included)
    lapsed: int  # nodes seen lately whose heartbeat has lapsed
    control: Control


@dataclass(slots=True)
class Outbox:
    """What a node sends with one round trip: locally counted requests and control values.

    ``offered`` and ``admitted`` map window -> field -> count; an admitted count's
    pool total goes under the :data:`TOTAL` field.
    """

    offered: dict[int, dict[str, int]]
    admitted: dict[int, dict[str, int]]
    publish: dict[str, str]


def decode_fields(flat: list[Any]) -> dict[str, str]:
    """HGETALL's flat reply -> {field: value} as text."""
    out: dict[str, str] = {}
    for i in range(0, len(flat) - 1, 2):
        key, value = flat[i], flat[i + 1]
        out[key.decode() if isinstance(key, bytes) else str(key)] = (
            value.decode() if isinstance(value, bytes) else str(value)
        )
    return out


def sync_args(
    pool: str,
    window: int,
    ttl: int,
    node: str,
    alive: int,
    window_s: float,
    out: Outbox,
) -> tuple[list[str], list[str | int | float]]:
    """KEYS and ARGV of :data:`SYNC_SCRIPT`."""
    nodes, control = store_keys(pool)
    keys = [redis_keys(pool, window - 1)[0], redis_keys(pool, window)[0], nodes, control]
    args: list[str | int | float] = [ttl, node, alive, int(LAPSED_KEEP * 1000), repr(window_s)]
    args.append(len(out.publish))
    for name, value in out.publish.items():
        args.extend((name, value))
    for which, added in ((0, out.offered), (1, out.admitted)):
        for w, counts in added.items():
            if not counts:
                continue
            keys.append(redis_keys(pool, w)[which])
            args.append(len(counts))
            for name, count in counts.items():
                args.extend((name, count))
    return keys, args


def decode_synced(reply: list[Any]) -> Synced:
    """:data:`SYNC_SCRIPT`'s reply."""
    previous, current, live, lapsed, control = reply
    return Synced(
        decode_counts(previous),
        decode_counts(current),
        int(live),
        int(lapsed),
        Control.parse(decode_fields(control)),
    )


def ttl_for(window: float) -> int:
    """Seconds a window's counters are kept: long enough for the governor to read them."""
    return max(int(window * 4) + 2, 5)


def flush_args(
    pool: str, pending: Mapping[int, Mapping[str, int]], window: int, ttl: int
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of :data:`FLUSH_SCRIPT`."""
    keys = [redis_keys(pool, window - 1)[0], redis_keys(pool, window)[0]]
    args: list[str | int] = [ttl]
    for window, counts in pending.items():
        keys.append(redis_keys(pool, window)[0])
        args.append(len(counts))
        for user, count in counts.items():
            args.extend((user, count))
    return keys, args


def decode_outcome(reply: bytes | str) -> Outcome:
    """:data:`TAKE_SCRIPT`'s reply, ``"k reason used total"``."""
    k, reason, used, total = reply.split()
    return Outcome(int(k), _REASONS[int(reason)], int(used), int(total))


def decode_outcomes(reply: bytes | str) -> list[Outcome]:
    """:data:`TAKE_MANY_SCRIPT`'s reply: four figures per entry."""
    figures = [int(x) for x in reply.split()]
    return [
        Outcome(figures[i], _REASONS[figures[i + 1]], figures[i + 2], figures[i + 3])
        for i in range(0, len(figures), 4)
    ]


_REASONS = tuple(Reason)  # by value: ADMITTED, USER, CAPACITY


def decode_counts(flat: list[Any]) -> dict[str, int]:
    """HGETALL's flat reply -> {user: count}."""
    out: dict[str, int] = {}
    for i in range(0, len(flat) - 1, 2):
        key = flat[i]
        out[key.decode() if isinstance(key, bytes) else str(key)] = int(flat[i + 1])
    return out


class Ledger(Protocol):
    """What the gate needs from a counter store (the aio twin mirrors it with ``async``)."""

    uri: str

    def take(self, pool: str, window: int, user: str, n: int, quota: Quota) -> Outcome:
        """Count ``n`` offered requests of ``user`` and admit as many as the quota allows."""
        ...

    def flush_and_read(
        self, pool: str, pending: Mapping[int, Mapping[str, int]], window: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Add locally counted offered requests, then read the offered counts of the
        previous and the current window."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class _Counts:
    """One pool's counters for one window."""

    __slots__ = ("admitted", "offered", "total")

    def __init__(self) -> None:
        self.offered: dict[str, int] = {}
        self.admitted: dict[str, int] = {}
        self.total = 0


#: Windows a memory ledger keeps behind the newest: the governor reads the previous one.
_KEEP = 2


class MemoryLedger:
    """Counters in this process's memory, in dicts by pool and window: one process only.

    Nothing leaves the process, so a decision is a few dict operations under a lock
    (the WSGI path decides from many threads); windows the governor no longer reads
    are dropped as new ones open.
    """

    def __init__(self, uri: str = "memory://", *, window: float = 1.0) -> None:
        self.uri = uri
        self._windows: dict[tuple[str, int], _Counts] = {}
        self._lock = threading.Lock()

    def _counts(self, pool: str, window: int) -> _Counts:
        # Called with the lock held.
        counts = self._windows.get((pool, window))
        if counts is None:
            counts = self._windows[(pool, window)] = _Counts()
            stale = [k for k in self._windows if k[0] == pool and k[1] < window - _KEEP]
            for key in stale:
                del self._windows[key]
        return counts

    def take(self, pool: str, window: int, user: str, n: int, quota: Quota) -> Outcome:
        with self._lock:
            counts = self._windows.get((pool, window)) or self._counts(pool, window)
            offered = counts.offered
            offered[user] = offered.get(user, 0) + n
            used = counts.admitted.get(user, 0)
            total = counts.total
            # admit_count, inlined on the path every in-memory decision takes
            room = min(quota.limit - used, quota.cap - total)
            spare = max(quota.budget - total, quota.guarantee - used)
            k = min(n, room, spare)
            if k >= n:
                counts.admitted[user] = used + n
                counts.total = total + n
                return Outcome(n, ADMITTED, used + n, total + n)
            k, reason = admit_count(n, used, total, quota)
            if k:
                used += k
                counts.admitted[user] = used
                counts.total = total = total + k
            return Outcome(k, reason, used, total)

    def admit(self, pool: str, window: int, user: str, n: int, quota: Quota) -> int:
        """Admit all ``n`` requests and return the User's room left, or -1 and count nothing.

        The common case of :meth:`take` without building an :class:`Outcome`: the gate
        calls :meth:`take` when this returns -1, so a refusal is counted exactly once.
        """
        with self._lock:
            counts = self._windows.get((pool, window)) or self._counts(pool, window)
            admitted = counts.admitted
            used = admitted.get(user, 0)
            total = counts.total
            # room(), inlined (and min/max written out): nearly every in-memory decision
            # takes this path
            left = quota.limit - used
            cap_left = quota.cap - total
            if cap_left < left:
                left = cap_left
            spare = quota.budget - total
            guaranteed = quota.guarantee - used
            if guaranteed > spare:
                spare = guaranteed
            if spare < left:
                left = spare
            if left < n:
                return -1
            offered = counts.offered
            offered[user] = offered.get(user, 0) + n
            admitted[user] = used + n
            counts.total = total + n
            return left - n

    def count(self, pool: str, window: int, user: str, n: int) -> None:
        """Count ``n`` offered requests decided elsewhere (refused from a cache)."""
        with self._lock:
            offered = self._counts(pool, window).offered
            offered[user] = offered.get(user, 0) + n

    def flush_and_read(
        self, pool: str, pending: Mapping[int, Mapping[str, int]], window: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        with self._lock:
            for slot_window, counts in pending.items():
                offered = self._counts(pool, slot_window).offered
                for user, count in counts.items():
                    offered[user] = offered.get(user, 0) + count
            self._counts(pool, window)  # drops windows older than the governor reads
            previous = self._windows.get((pool, window - 1))
            return (
                dict(previous.offered) if previous is not None else {},
                dict(self._windows[(pool, window)].offered),
            )

    def close(self) -> None:
        with self._lock:
            self._windows.clear()


class RedisLedger:
    """Counters on Redis (or Cluster, Sentinel): one script call per decision."""

    def __init__(self, uri: str, *, window: float = 1.0, **options: Any) -> None:
        self.uri = uri
        self.storage: RedisStorage = cast(
            RedisStorage, built(uri, options, lambda: storage_from_string)
        )
        client: Any = self.storage.get_connection()  # redis-py's client; limits types it loosely
        check_client(uri, client)
        self._client = client
        self._take = client.register_script(TAKE_SCRIPT)
        self._flush = client.register_script(FLUSH_SCRIPT)
        self._sync = client.register_script(SYNC_SCRIPT)
        self._ttl = ttl_for(window)

    def take(self, pool: str, window: int, user: str, n: int, quota: Quota) -> Outcome:
        return self.grant(pool, window, user, n, n, quota)

    def grant(
        self,
        pool: str,
        window: int,
        user: str,
        n: int,
        want: int,
        quota: Quota,
        earlier: int = 0,
    ) -> Outcome:
        """Count ``n`` offered requests (and ``earlier`` ones decided locally) and grant
        up to ``want`` admissions (a lease).

        ``Outcome.admitted`` may exceed ``n``: the rest is the lease.
        """
        quotas = [quota.limit, quota.guarantee, quota.budget, quota.cap]
        reply = self._take(
            keys=redis_keys(pool, window),
            args=[user, n, *quotas, self._ttl, want, earlier],
        )
        return decode_outcome(reply)

    def flush_and_read(
        self, pool: str, pending: Mapping[int, Mapping[str, int]], window: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        keys, args = flush_args(pool, pending, window, self._ttl)
        previous, current = self._flush(keys=keys, args=args)
        return decode_counts(previous), decode_counts(current)

    def sync(
        self, pool: str, window: int, node: str, alive: int, out: Outbox, seconds: float
    ) -> Synced:
        """One control period's round trip: heartbeat, counts out, counts and control in.

        ``seconds`` is the pool's window length, published for ``srtm inspect``.
        """
        keys, args = sync_args(pool, window, self._ttl, node, alive, seconds, out)
        return decode_synced(self._sync(keys=keys, args=args))

    def leave(self, pool: str, node: str) -> None:
        """Take this node off the pool's live nodes (a clean shutdown is no lapse)."""
        self._client.zrem(store_keys(pool)[0], node)

    def close(self) -> None:
        self._client.close()


def built(uri: str, options: Mapping[str, Any], factory: Any) -> Any:
    """A ``limits`` storage for ``uri``; options it cannot take are a :class:`PolicyError`.

    ``factory`` returns ``storage_from_string`` (sync or aio).
    """
    from srtm._errors import PolicyError

    try:
        return factory()(uri, **options)
    except (TypeError, ValueError) as exc:
        raise PolicyError(
            "storage_options", f"{uri!r} cannot take {dict(options)!r}: {exc}"
        ) from exc


def check_client(uri: str, client: Any) -> None:
    """Build (not connect) one connection now, so options the client only reads when it
    first connects (every redis-py connection keyword) fail when the gate is built,
    not at the first request."""
    from srtm._errors import PolicyError

    pool = getattr(client, "connection_pool", None)
    kind = getattr(pool, "connection_class", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if kind is None or not isinstance(kwargs, dict):
        return  # Cluster and coredis clients take their options when built
    try:
        kind(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PolicyError("storage_options", f"{uri!r}: {exc}") from exc


#: Timeouts so a dead store costs a decision milliseconds, not a hang, and no retries:
#: redis-py retries a failed command 3 times by default, which would make a probing
#: request wait four socket timeouts. The gate itself falls back and probes again.
SYNC_REDIS_DEFAULTS: dict[str, Any] = {
    "socket_timeout": 0.25,
    "socket_connect_timeout": 0.25,
}


def redis_defaults() -> dict[str, Any]:
    """Default client options for the Redis family (sync redis-py).

    ``retry`` serves Redis, Sentinel's master connections and Cluster alike: Cluster
    otherwise re-runs a failed command on a refreshed slot map three times.
    """
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {**SYNC_REDIS_DEFAULTS, "retry": Retry(NoBackoff(), 0)}


def ledger_for(policy: TrafficPolicy) -> Ledger:
    """The sync ledger for a policy's storage URI."""
    if policy.scheme == "memory":
        return MemoryLedger(policy.sync_storage_uri, window=policy.window)
    options = {**redis_defaults(), **policy.storage_options}
    return RedisLedger(policy.sync_storage_uri, window=policy.window, **options)
