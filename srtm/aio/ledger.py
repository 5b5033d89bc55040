"""The async twin of :mod:`srtm.ledger` on ``limits.aio`` storages: never blocks the loop."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol, cast

from limits.aio.storage import RedisStorage
from limits.storage import storage_from_string

from srtm.ledger import (
    FLUSH_SCRIPT,
    SYNC_SCRIPT,
    TAKE_MANY_SCRIPT,
    TAKE_SCRIPT,
    Outbox,
    Outcome,
    Quota,
    Synced,
    built,
    check_client,
    decode_counts,
    decode_outcome,
    decode_outcomes,
    decode_synced,
    flush_args,
    redis_keys,
    store_keys,
    sync_args,
    ttl_for,
)
from srtm.ledger import MemoryLedger as SyncMemoryLedger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping, Sequence

    from srtm.policy import TrafficPolicy

__all__ = ["Entry", "Ledger", "MemoryLedger", "RedisLedger", "ledger_for"]

#: One User's part of a batched grant: (user, n, want, quota, earlier), as
#: :meth:`RedisLedger.grant` takes them.
Entry = tuple[str, int, int, Quota, int]


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
    """Counters in this process's memory: one process, one event loop.

    Counting in memory does no I/O, so this twin awaits nothing: it wraps the sync
    :class:`srtm.ledger.MemoryLedger`, whose lock is never contended on one loop.
    """

    def __init__(self, uri: str = "async+memory://", *, window: float = 1.0) -> None:
        self.uri = uri
        self.local: SyncMemoryLedger = SyncMemoryLedger(uri, window=window)

    async def take(self, pool: str, window: int, user: str, n: int, quota: Quota) -> Outcome:
        return self.local.take(pool, window, user, n, quota)

    async def flush_and_read(
        self, pool: str, pending: Mapping[int, Mapping[str, int]], window: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        return self.local.flush_and_read(pool, pending, window)

    async def close(self) -> None:
        self.local.close()


class RedisLedger:
    """Counters on Redis through the client of a ``limits.aio`` Redis storage.

    ``limits.aio`` offers two clients: redis-py's asyncio client
    (``implementation="redispy"``, srtm's default, see :func:`ledger_for`) and coredis
    (``limits``' own default). Both run the same scripts; on a local Redis a round trip
    through redis-py's asyncio client cost 0.5 to 0.7 of one through coredis
    (``bench/inprocess.py``, the ``srtm asgi`` and ``srtm asgi, coredis`` rows).
    """

    def __init__(self, uri: str, *, window: float = 1.0, **options: Any) -> None:
        self.uri = uri
        # redis-py's asyncio client bounds each send and each read with an asyncio
        # timeout of its own (two per command: 20 us of a 75 us PING here); one bound
        # on the whole call costs a fifth of that and still fails a call within
        # ``socket_timeout``: on timeout the client drops the connection, as it does
        # for its own timeouts.
        self._timeout: float | None = None
        if options.get("implementation") == "redispy":  # limits' own default is coredis
            self._timeout = options.get("socket_timeout")
            options = {**options, "socket_timeout": None}
        self.storage: RedisStorage = cast(
            RedisStorage, built(uri, options, lambda: storage_from_string)
        )
        # limits exposes its client (redis.asyncio or coredis) through the storage's bridge.
        client: Any = self.storage.bridge.get_connection()  # type: ignore[attr-defined]
        check_client(uri, client)
        self._client = client
        # Both clients' script objects are awaitable when called with keys= and args=.
        self._take = client.register_script(TAKE_SCRIPT)
        self._take_many = client.register_script(TAKE_MANY_SCRIPT)
        self._flush = client.register_script(FLUSH_SCRIPT)
        self._sync = client.register_script(SYNC_SCRIPT)
        self._ttl = ttl_for(window)

    async def take(self, pool: str, window: int, user: str, n: int, quota: Quota) -> Outcome:
        return await self.grant(pool, window, user, n, n, quota)

    async def grant(
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
        up to ``want`` admissions (a lease)."""
        keys = list(redis_keys(pool, window))
        args = [user, n, quota.limit, quota.guarantee, quota.budget, quota.cap, self._ttl]
        args += (want, earlier)
        return decode_outcome(await self._bounded(self._take(keys=keys, args=args)))

    async def grant_many(self, pool: str, window: int, entries: Sequence[Entry]) -> list[Outcome]:
        """:meth:`grant` for several Users of one pool and window, in one script call.

        Entries are decided in order, each as its own :meth:`grant` would be.
        """
        args: list[str | int] = [self._ttl]
        for user, n, want, quota, earlier in entries:
            args += (user, n, quota.limit, quota.guarantee, quota.budget, quota.cap, want, earlier)
        keys = list(redis_keys(pool, window))
        outcomes = decode_outcomes(await self._bounded(self._take_many(keys=keys, args=args)))
        if len(outcomes) != len(entries):
            raise RuntimeError(f"batch of {len(entries)} answered with {len(outcomes)} outcomes")
        return outcomes

    async def flush_and_read(
        self, pool: str, pending: Mapping[int, Mapping[str, int]], window: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        keys, args = flush_args(pool, pending, window, self._ttl)
        reply = await self._bounded(self._flush(keys=keys, args=args))
        previous, current = cast(list[list[Any]], reply)
        return decode_counts(previous), decode_counts(current)

    async def sync(
        self, pool: str, window: int, node: str, alive: int, out: Outbox, seconds: float
    ) -> Synced:
        """One control period's round trip: heartbeat, counts out, counts and control in.

        ``seconds`` is the pool's window length, published for ``srtm inspect``.
        """
        keys, args = sync_args(pool, window, self._ttl, node, alive, seconds, out)
        return decode_synced(cast(list[Any], await self._bounded(self._sync(keys=keys, args=args))))

    async def leave(self, pool: str, node: str) -> None:
        """Take this node off the pool's live nodes (a clean shutdown is no lapse)."""
        if hasattr(self._client, "aclose"):  # redis.asyncio: members as arguments
            await self._bounded(self._client.zrem(store_keys(pool)[0], node))
        else:  # coredis: members as a list
            await self._client.zrem(store_keys(pool)[0], [node])

    async def _bounded(self, call: Awaitable[Any]) -> Any:
        """Await a store call within the client's ``socket_timeout`` (see ``__init__``)."""
        if self._timeout is None:
            return await call
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except TimeoutError:  # asyncio's says nothing: say what timed out (for the log)
            raise TimeoutError(f"no answer from {self.uri} within {self._timeout} s") from None

    async def close(self) -> None:
        aclose = getattr(self._client, "aclose", None)
        if aclose is not None:  # redis.asyncio
            await aclose()
        else:  # coredis
            self._client.connection_pool.disconnect()


#: redis-py's asyncio client, with timeouts so a dead store costs a decision
#: milliseconds, not a hang: the same options as the sync path (one set of
#: ``storage_options`` serves both).
ASYNC_REDIS_DEFAULTS: dict[str, Any] = {
    "implementation": "redispy",
    "socket_timeout": 0.25,
    "socket_connect_timeout": 0.25,
}
#: The same timeouts for coredis, when a policy asks for ``implementation="coredis"``.
COREDIS_DEFAULTS: dict[str, Any] = {"stream_timeout": 0.25, "connect_timeout": 0.25}


def ledger_for(policy: TrafficPolicy) -> Ledger:
    """The async ledger for a policy's storage URI."""
    if policy.scheme == "memory":
        return MemoryLedger(policy.async_storage_uri, window=policy.window)
    options = dict(policy.storage_options)
    if options.get("implementation", "redispy") == "redispy":
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # No client retries (redis-py retries 3 times by default): the gate falls back
        # and its control loop probes again; Cluster (whose own retries this object
        # replaces) tries a command once.
        defaults: dict[str, Any] = {**ASYNC_REDIS_DEFAULTS, "retry": Retry(NoBackoff(), 0)}
        options = {**defaults, **options}
    else:
        options = {**COREDIS_DEFAULTS, **options}
    return RedisLedger(policy.async_storage_uri, window=policy.window, **options)
