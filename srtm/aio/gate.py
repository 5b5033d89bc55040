"""The async twin of :class:`srtm.gate.Gate`: ``limits.aio`` storages, an asyncio task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING

from srtm.aio.ledger import MemoryLedger, ledger_for
from srtm.gate import Decision, GateCore

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from srtm.aio.ledger import Ledger
    from srtm.gate import _Pool
    from srtm.identity import Identity
    from srtm.ledger import Outcome, Quota
    from srtm.policy import TrafficPolicy

__all__ = ["AsyncGate"]

log = logging.getLogger("srtm.gate")


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
        self._fallback = MemoryLedger(window=min(p.policy.window for p in self.pools.values()))
        self._background = background
        self._task: asyncio.Task[None] | None = None
        self._tick_lock: asyncio.Lock | None = None

    async def decide(self, identity: Identity, n: int = 1, *, now: float | None = None) -> Decision:
        """Admit or refuse ``n`` requests of ``identity`` (KeyError for an unknown pool)."""
        if self._background and (self._task is None or self._task.done()):
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
            ledger = self._ledgers[p.name]
            if type(ledger) is MemoryLedger:  # no I/O: skip the coroutine
                outcome = ledger.local.take(p.name, window, user, n, quota)
            else:
                outcome = await ledger.take(p.name, window, user, n, quota)
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
        taken = None if degraded else await self._take(p, window, user, n, quota, now)
        if taken is not None:
            outcome = taken
        else:  # the store failed, now or earlier: decide locally
            degraded = True
            quota = self.quota(p, user, degraded=True)
            outcome = self._fallback.local.take(p.name, window, user, n, quota)
        self.record(p, user, window, n, outcome, quota)
        return self.decision(p, identity, n, now, quota, outcome, degraded=degraded)

    async def _take(
        self, p: _Pool, window: int, user: str, n: int, quota: Quota, now: float
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
            self.store_failed(now, exc)
            return None
        if self.degraded_since is not None:
            self.store_ok(now)
        if p.lease is not None:
            outcome = self.leased(p, user, n, now, window, quota, outcome)
        return outcome

    async def tick(self, now: float | None = None) -> None:
        """Recompute every pool from the offered rate of the last window (off the hot path)."""
        now = self.clock() if now is None else now
        if self._tick_lock is None:
            self._tick_lock = asyncio.Lock()
        async with self._tick_lock:
            for p in self.pools.values():
                window = self.window_of(p, now)
                pending = self.take_pending(p)
                ledger, scale = self._ledgers[p.name], 1
                if p.name in self._shared and self.store_usable(now):
                    try:
                        counts = await ledger.flush_and_read(p.name, pending, window)
                    except Exception as exc:  # keep deciding locally; the counts are kept
                        self.store_failed(now, exc)
                        self.return_pending(p, pending)
                        counts = await self._fallback.flush_and_read(p.name, {}, window)
                        scale = p.policy.nodes
                    else:
                        self.store_ok(now)
                elif p.name in self._shared:
                    counts = await self._fallback.flush_and_read(p.name, pending, window)
                    scale = p.policy.nodes
                else:
                    counts = await ledger.flush_and_read(p.name, pending, window)
                self.absorb(p, now, counts, scale)

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
        """Stop the recomputation task and release the storages."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._task
            self._task = None
        for ledger in {id(led): led for led in self._ledgers.values()}.values():
            try:
                await ledger.close()
            except Exception:  # closing a dead connection is not worth a crash
                log.debug("srtm: error closing %s", ledger.uri, exc_info=True)
