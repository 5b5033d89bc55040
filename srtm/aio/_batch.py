"""Batched store calls: concurrent grants of different Users go out as one script call.

In the spirit of Gubernator's BATCHING: a grant asked for while the store is idle goes
out at once (a lone request pays no batching delay); grants asked for while calls are
in flight wait for the next turn of the event loop and leave together, one
:data:`srtm.ledger.TAKE_MANY_SCRIPT` call per pool and window, or sooner when
:data:`BATCH_MAX` are waiting. Round trips per second then follow the loop's turns, not
the number of concurrent requests. The batch script decides its entries in order, each
as its own call would, so batching changes no decision.

Nothing here is a library's: asyncio has no request coalescer and ``limits`` batches
nothing; redis-py's pipeline would still send one command per request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from srtm.aio.ledger import Entry
    from srtm.ledger import Outcome

__all__ = ["BATCH_MAX", "Batcher"]

#: Most grants one script call carries (a longer Lua run would hold the store up).
BATCH_MAX = 128

_Waiting = list[tuple["Entry", "asyncio.Future[Outcome]"]]


class Batcher:
    """Grants of one ledger, sent at once when idle and batched while busy."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self._pending: dict[tuple[str, int], _Waiting] = {}
        self._scheduled = False
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        #: Script calls sent, and grants they carried (for benchmarks and tests).
        self.calls = 0
        self.grants = 0

    async def grant(self, pool: str, window: int, entry: Entry) -> Outcome:
        """One User's grant, as :meth:`srtm.aio.ledger.RedisLedger.grant` answers it."""
        if not self._inflight and not self._pending:  # idle: no one to batch with
            self._inflight += 1
            self.calls += 1
            self.grants += 1
            try:
                user, n, want, quota, earlier = entry
                outcome: Outcome = await self.ledger.grant(
                    pool, window, user, n, want, quota, earlier
                )
                return outcome
            finally:
                self._inflight -= 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        waiting = self._pending.setdefault((pool, window), [])
        waiting.append((entry, future))
        if len(waiting) >= BATCH_MAX:
            self._send((pool, window), self._pending.pop((pool, window)))
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for key, waiting in pending.items():
            self._send(key, waiting)

    def _send(self, key: tuple[str, int], waiting: _Waiting) -> None:
        task = asyncio.get_running_loop().create_task(self._call(key, waiting))
        self._tasks.add(task)  # a strong reference until it ends
        task.add_done_callback(self._tasks.discard)

    async def _call(self, key: tuple[str, int], waiting: _Waiting) -> None:
        self._inflight += 1
        self.calls += 1
        self.grants += len(waiting)
        try:
            outcomes = await self.ledger.grant_many(key[0], key[1], [e for e, _ in waiting])
        except BaseException as exc:  # every waiter sees the fault (and degrades)
            error = exc if isinstance(exc, Exception) else RuntimeError("batch cancelled")
            for _, future in waiting:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), outcome in zip(waiting, outcomes, strict=True):
                if not future.done():  # a waiter cancelled meanwhile: its count stands
                    future.set_result(outcome)
        finally:
            self._inflight -= 1

    async def close(self) -> None:
        """Wait for the calls in flight (a gate closing its ledger)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
