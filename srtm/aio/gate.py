"""The async twin of :class:`srtm.gate.Gate`: ``limits.aio`` storages, an asyncio task.

The control task's work for a pool with many Users (the governor's recomputation, the
sweep of idle Users) runs in a worker thread, so the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING

from srtm.aio.ledger import MemoryLedger, ledger_for
from srtm.gate import Decision, GateCore
from srtm.ledger import alive_ms

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from srtm.aio.ledger import Ledger
    from srtm.gate import _Pool
    from srtm.identity import Identity
    from srtm.ledger import Outcome, Quota, Synced
    from srtm.policy import TrafficPolicy

__all__ = ["AsyncGate"]

log: logging.Logger = logging.getLogger("srtm.gate")

# Recomputation with more Users than this runs in a worker thread, so a crowd of
# identities never stalls the event loop (fair share is O(n log n) in the Users).
_OFF_LOOP = 1000


class AsyncGate(GateCore):
    """The asyncio gate, for ASGI servers: never blocks the event loop."""

    def __init__(
        self,
        policy: TrafficPolicy | Mapping[str, TrafficPolicy],
        *,
        clock: Callable[[], float] = time.time,
        background: bool = True,
    ) -> None:
        super().__init__(policy, clock=clock)
        self._ledgers: dict[str, Ledger] = self.ledger_per_pool(
            lambda policy: policy.async_storage_uri, ledger_for
        )
        self._shared = {n for n, led in self._ledgers.items() if not isinstance(led, MemoryLedger)}
        self.use_leases(self._shared)
        self._background = background
        self._task: asyncio.Task[None] | None = None
        self._tick_lock: asyncio.Lock | None = None

    async def decide(self, identity: Identity, n: int = 1, *, now: float | None = None) -> Decision:
        """Admit or refuse ``n`` requests of ``identity`` (KeyError for an unknown pool)."""
        if self._background and (self._task is None or self._task.done()):
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
            if type(ledger) is MemoryLedger:  # no I/O: skip the coroutine
                outcome = ledger.local.take(p.name, window, user, n, quota)
            else:
                outcome = await ledger.take(p.name, window, user, n, quota)
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
        taken = None if degraded else await self._take(p, window, user, n, quota, now, real)
        if taken is not None:
            outcome = taken
        else:  # the store failed, now or earlier: decide locally
            degraded = True
            quota = self.quota(p, user, degraded=True)
            outcome = self.local.take(p.name, window, user, n, quota)
            self.record_local(p, user, window, n, outcome.admitted)
        self.record(p, user, window, n, outcome, quota)
        return self.decision(p, identity, n, now, quota, outcome, degraded=degraded)

    async def _take(
        self, p: _Pool, window: int, user: str, n: int, quota: Quota, now: float, real: bool
    ) -> Outcome | None:
        ledger = self._ledgers[p.name]
        try:
            if p.lease is None:
                outcome = await ledger.take(p.name, window, user, n, quota)
            else:
                want = self.lease_want(p, user, n, now, window)
                earlier = self.take_user_pending(p, window, user)
                try:
                    outcome = await ledger.grant(  # type: ignore[attr-defined]
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

    async def tick(self, now: float | None = None) -> None:
        """Recompute every pool from the offered rate of the last window (off the hot path).

        On a shared store this is also the node's heartbeat, the carrier of its local
        counts and control values, and, while the store is failed, the only probe.
        """
        real = now is None
        now = self.clock() if now is None else now
        if self._tick_lock is None:
            self._tick_lock = asyncio.Lock()
        async with self._tick_lock:
            for p in self.pools.values():
                window = self.window_of(p, now)
                ledger, scale = self._ledgers[p.name], 1
                counts: tuple[dict[str, int], dict[str, int]] | None
                if p.name not in self._shared:
                    counts = await ledger.flush_and_read(p.name, self.take_pending(p), window)
                elif self.store_usable(now):
                    counts = await self._sync(p, window, real, now)
                else:
                    self.prune_unsent(p, window)
                    counts = None
                if counts is None:
                    counts, scale = self.local.flush_and_read(p.name, {}, window), p.policy.nodes
                if len(p.stats) + len(p.governor.demand) > _OFF_LOOP:
                    await asyncio.to_thread(self._recompute, p, now, counts, scale, window)
                else:
                    self._recompute(p, now, counts, scale, window)

    def _recompute(
        self,
        p: _Pool,
        now: float,
        counts: tuple[dict[str, int], dict[str, int]],
        scale: int,
        window: int,
    ) -> None:
        self.absorb(p, now, counts, scale)
        self.sweep(p, window)

    async def _sync(
        self, p: _Pool, window: int, real: bool, now: float
    ) -> tuple[dict[str, int], dict[str, int]] | None:
        """One round trip for a shared pool; None (and local decisions) if it failed."""
        ledger = self._ledgers[p.name]
        sync = getattr(ledger, "sync", None)
        out = self.outbox(p, window)
        period = p.policy.control_period or p.policy.window
        try:
            if sync is None:  # a ledger without heartbeats: counts only
                counts: tuple[dict[str, int], dict[str, int]] = await ledger.flush_and_read(
                    p.name, out.offered, window
                )
            else:
                got: Synced = await sync(
                    p.name, window, self.node, alive_ms(period), out, p.policy.window
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

    def start(self) -> None:
        """Start the recomputation task on the running loop (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="srtm-governor")

    async def _run(self) -> None:
        period = min(p.policy.control_period or p.policy.window for p in self.pools.values())
        while True:
            await asyncio.sleep(period)  # a periodic timer, not a stand-in for an event
            try:
                await self.tick()
            except Exception:  # the loop must outlive any one bad recomputation
                log.exception("srtm: recomputation failed; will try again next period")

    async def close(self) -> None:
        """Stop the recomputation task, leave the live nodes and release the storages."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._task
            self._task = None
        for name in self._shared:
            leave = getattr(self._ledgers[name], "leave", None)
            if leave is not None and self.degraded_since is None:
                try:
                    await leave(name, self.node)
                except Exception:  # a dead store: the heartbeat lapses instead
                    log.debug("srtm: could not leave the live nodes", exc_info=True)
        for ledger in {id(led): led for led in self._ledgers.values()}.values():
            try:
                await ledger.close()
            except Exception:  # closing a dead connection is not worth a crash
                log.debug("srtm: error closing %s", ledger.uri, exc_info=True)
