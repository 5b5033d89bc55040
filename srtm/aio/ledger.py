"""The async twin of :mod:`srtm.ledger` on ``limits.aio`` storages: never blocks the loop."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Protocol, cast

from limits.aio.storage import MemoryStorage, RedisStorage
from limits.storage import storage_from_string

from srtm.ledger import (
    FLUSH_SCRIPT,
    TAKE_SCRIPT,
    Outcome,
    Quota,
    Reason,
    admit_count,
    decode_counts,
    flush_args,
    redis_keys,
    ttl_for,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from srtm.policy import TrafficPolicy

__all__ = ["Ledger", "MemoryLedger", "RedisLedger", "ledger_for"]


class Ledger(Protocol):
    """What the async gate needs from a counter store."""

    uri: str

    async def take(self, pool: str, window: int, user: str, n: int, quota: Quota) -> Outcome:
        """Count ``n`` offered requests of ``user`` and admit as many as the quota allows."""
        ...

    async def flush_and_read(
        self, pool: str, pending: Mapping[int, Mapping[str, int]], window: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Add locally counted offered requests, then read the offered counts of the
        previous and the current window."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryLedger:
    """Counters in a ``limits.aio`` MemoryStorage: one process, one event loop."""

    def __init__(self, uri: str = "async+memory://", *, window: float = 1.0) -> None:
        self.uri = uri
        self.storage = MemoryStorage(uri)
        self._ttl = ttl_for(window)
        self._offered: dict[tuple[str, int], defaultdict[str, int]] = {}

    async def take(self, pool: str, window: int, user: str, n: int, quota: Quota) -> Outcome:
        offered = self._offered.get((pool, window))
        if offered is None:
            offered = self._offered[(pool, window)] = defaultdict(int)
        offered[user] += n
        # As in the sync twin: increment, then give back what was not admitted.
        prefix = f"srtm/{pool}/{window}/"
        used = await self.storage.incr(prefix + user, self._ttl, n)
        total = await self.storage.incr(prefix, self._ttl, n)
        k, reason = admit_count(n, used - n, total - n, quota)
        if k < n:
            used = await self.storage.decr(prefix + user, n - k)
            total = await self.storage.decr(prefix, n - k)
        return Outcome(k, reason, used, total)

    async def flush_and_read(
        self, pool: str, pending: Mapping[int, Mapping[str, int]], window: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        for slot_window, counts in pending.items():
            offered = self._offered.setdefault((pool, slot_window), defaultdict(int))
            for user, count in counts.items():
                offered[user] += count
        for slot in [s for s in self._offered if s[0] == pool and s[1] < window - 2]:
            del self._offered[slot]
        return (
            dict(self._offered.get((pool, window - 1), {})),
            dict(self._offered.get((pool, window), {})),
        )

    async def close(self) -> None:
        await self.storage.reset()


class RedisLedger:
    """Counters on Redis through the coredis client that ``limits.aio`` uses."""

    def __init__(self, uri: str, *, window: float = 1.0, **options: Any) -> None:
        self.uri = uri
        self.storage = cast(RedisStorage, storage_from_string(uri, **options))
        # limits exposes the coredis client through the storage's bridge.
        client: Any = self.storage.bridge.get_connection()  # type: ignore[attr-defined]
        self._client = client
        self._take = client.register_script(TAKE_SCRIPT)
        self._flush = client.register_script(FLUSH_SCRIPT)
        self._ttl = ttl_for(window)

    async def take(self, pool: str, window: int, user: str, n: int, quota: Quota) -> Outcome:
        reply = await self._take.execute(
            keys=list(redis_keys(pool, window)),
            args=[user, n, quota.limit, quota.guarantee, quota.budget, quota.cap, self._ttl],
        )
        k, reason, used, total = cast(list[int], reply)
        return Outcome(int(k), Reason(int(reason)), int(used), int(total))

    async def flush_and_read(
        self, pool: str, pending: Mapping[int, Mapping[str, int]], window: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        keys, args = flush_args(pool, pending, window, self._ttl)
        previous, current = cast(list[list[Any]], await self._flush.execute(keys=keys, args=args))
        return decode_counts(previous), decode_counts(current)

    async def close(self) -> None:
        self._client.connection_pool.disconnect()


#: coredis timeouts so a dead store costs a decision milliseconds, not a hang.
ASYNC_REDIS_DEFAULTS: dict[str, Any] = {"stream_timeout": 0.25, "connect_timeout": 0.25}


def ledger_for(policy: TrafficPolicy) -> Ledger:
    """The async ledger for a policy's storage URI."""
    if policy.scheme == "memory":
        return MemoryLedger(policy.async_storage_uri, window=policy.window)
    options = {**ASYNC_REDIS_DEFAULTS, **policy.storage_options}
    return RedisLedger(policy.async_storage_uri, window=policy.window, **options)
