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

from srtm.aio._batch import Batcher
from srtm.aio.ledger import MemoryLedger, ledger_for
from srtm.gate import Decision, GateCore
from srtm.ledger import Outcome, Reason, alive_ms

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from srtm.aio.ledger import Ledger
    from srtm.gate import _Pool
    from srtm.identity import Identity
    from srtm.ledger import Quota, Synced
    from srtm.policy import TrafficPolicy

__all__ = ["AsyncGate"]


class _Member:
    """A request taking part in a User's coalesced store call."""

    __slots__ = ("future", "identity", "n", "now")

    def __init__(
        self,
        identity: Identity,
        n: int,
        now: float,
        future: asyncio.Future[Decision | list[_Member] | None] | None,
    ) -> None:
        self.identity = identity
        self.n = n
        self.now = now
        # None for the leader; for a waiter: its Decision, the waiters it now leads,
        # or None to look again (a refusal is cached, or the window moved on).
        self.future = future


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
        # Requests waiting for the store call in flight of their (pool, User).
        self._flights: dict[tuple[str, str], list[_Member]] = {}
        # One batcher per shared ledger able to take a batch; shared by its pools.
        by_ledger: dict[int, Batcher] = {}
        self._batchers: dict[str, Batcher] = {}
        for name in self._shared:
            ledger = self._ledgers[name]
            if hasattr(ledger, "grant_many"):
                batcher = by_ledger.setdefault(id(ledger), Batcher(ledger))
                self._batchers[name] = batcher

    async def decide(self, identity: Identity, n: int = 1, *, now: float | None = None) -> Decision:
        """Admit or refuse ``n`` requests of ``identity`` (KeyError for an unknown pool)."""
        if self._background and (self._task is None or self._task.done()):
            self.start()
        p = self.pools[identity.pool]
        real = now is None
        if now is None:
            now = self.clock()
        ledger = self._ledgers[p.name]
        if type(ledger) is MemoryLedger:  # no I/O: nothing to await
            return self._in_memory(p, identity, n, now, ledger)
        if p.name not in self._shared:  # counted in this process: no round trip to save
            window = math.floor(now / p.window)
            quota = self.quota_for(p, identity.user)
            if p.full == window or identity.user in p.refused:
                known = self._known_refusal(p, identity, n, now, window, quota)
                if known is not None:
                    return known
            outcome = await ledger.take(p.name, window, identity.user, n, quota)
            self.record(p, identity.user, window, n, outcome, quota)
            return self.decision(p, identity, n, now, quota, outcome, degraded=False)
        return await self._shared_decide(p, identity, n, now, real)

    def decide_now(self, identity: Identity, n: int = 1) -> Decision | None:
        """:meth:`decide` on the gate's clock, without a coroutine, when the pool is counted
        in this process's memory (no I/O to wait for); None otherwise: await ``decide``.

        The ASGI middleware's fast path: a coroutine per request costs as much as a
        third of an in-memory decision.
        """
        if self._background and (self._task is None or self._task.done()):
            self.start()
        p = self.pools[identity.pool]
        ledger = self._ledgers[p.name]
        if type(ledger) is not MemoryLedger:
            return None
        return self._in_memory(p, identity, n, self.clock(), ledger)

    def _in_memory(
        self, p: _Pool, identity: Identity, n: int, now: float, ledger: MemoryLedger
    ) -> Decision:
        """The decision of a pool counted in this process's memory: no I/O, no await."""
        window = math.floor(now / p.window)
        user = identity.user
        quota = self.quota_for(p, user)
        if p.full == window or user in p.refused:
            known = self._known_refusal(p, identity, n, now, window, quota)
            if known is not None:
                return known
        local = ledger.local
        left = local.admit(p.name, window, user, n, quota)
        if left >= 0:  # admitted in full: no Outcome to build
            self.count_admitted(p, user, window, n)
            return self.admitted(p, user, n, now, window, quota.limit, left, False)
        outcome = local.take(p.name, window, user, n, quota)
        self.record(p, user, window, n, outcome, quota)
        return self.decision(p, identity, n, now, quota, outcome, degraded=False)

    def _known_refusal(
        self, p: _Pool, identity: Identity, n: int, now: float, window: int, quota: Quota
    ) -> Decision | None:
        """A refusal already known for the window (counted as such), or None.

        Callers test ``p.full == window or user in p.refused`` first, inline: the miss
        nearly every admitted request takes, without a call.
        """
        reason = self.cached(p, identity.user, window, quota)
        if reason is None:
            return None
        return self.refuse_cached(p, identity, n, now, window, quota, reason, False)

    def _local_answer(
        self, p: _Pool, identity: Identity, n: int, now: float, window: int
    ) -> Decision | None:
        """A decision needing no store call (degraded, leased, or a known refusal), or None."""
        user = identity.user
        if self.degraded_since is not None:  # the store failed earlier: decide locally
            return self._degraded(p, identity, n, now, window, cache=True)
        quota = self.quota_for(p, user)
        if p.lease is not None:
            leased = self.from_lease(p, identity, n, now, window, quota)
            if leased is not None:
                return leased
        cached = self.cached(p, user, window, quota)
        if cached is not None:
            return self.refuse_cached(p, identity, n, now, window, quota, cached, False)
        return None

    def _degraded(
        self, p: _Pool, identity: Identity, n: int, now: float, window: int, *, cache: bool
    ) -> Decision:
        """Decide on the local ledger with this node's share of every figure.

        ``cache``: a refusal known for the window answers first (not when the store
        has just failed this very request: it goes to the local ledger, as it always has).
        """
        user = identity.user
        quota = self.quota(p, user, degraded=True)
        if cache:
            cached = self.cached(p, user, window, quota)
            if cached is not None:
                return self.refuse_cached(p, identity, n, now, window, quota, cached, True)
        outcome = self.local.take(p.name, window, user, n, quota)
        self.record_local(p, user, window, n, outcome.admitted)
        self.record(p, user, window, n, outcome, quota)
        return self.decision(p, identity, n, now, quota, outcome, degraded=True)

    async def _shared_decide(
        self, p: _Pool, identity: Identity, n: int, now: float, real: bool
    ) -> Decision:
        """Decide on a shared store: at most one store call in flight per (pool, User).

        A request of a User whose call is in flight waits for it (single-flight). If that
        call refused the User, the waiters are answered from the refusal cache; if it
        admitted, the first waiter leads the next call for all of them at once, taking
        their requests together (the script admits what the same requests would one
        at a time: each admission lowers the User's room by one, so the hard cap and
        the quotas hold exactly). A leader that leaves early hands its waiters on.
        """
        key = (p.name, identity.user)
        group: list[_Member] = []
        while True:
            answer = self._local_answer(p, identity, n, now, math.floor(now / p.window))
            if answer is not None:
                return answer
            if key not in self._flights:
                self._flights[key] = []  # we lead; later requests of the User wait
                break
            future: asyncio.Future[Decision | list[_Member] | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._flights[key].append(_Member(identity, n, now, future))
            try:
                got = await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._hand_on(key, future.result())  # a lead it cannot take up
                raise
            if real:
                now = self.clock()
            if isinstance(got, Decision):
                return got
            if got is not None:  # we lead the next call, for these waiters too
                group = got
                break
        try:
            if not group:  # the common case, a request alone: no members to share out
                return await self._alone(p, identity, n, now, real, key)
            return await self._lead(p, _Member(identity, n, now, None), group, real)
        except BaseException:
            for member in group:
                if member.future is not None and not member.future.done():
                    member.future.set_result(None)
            self._hand_on(key, None, again=True)
            raise

    async def _alone(
        self, p: _Pool, identity: Identity, n: int, now: float, real: bool, key: tuple[str, str]
    ) -> Decision:
        """:meth:`_lead` for a leader without waiters (just checked: no local answer)."""
        user = identity.user
        window = math.floor(now / p.window)
        quota = self.quota_for(p, user)
        outcome = await self._take(p, window, user, n, quota, now, real)
        if outcome is None:  # the store failed: decide locally
            decision = self._degraded(p, identity, n, now, window, cache=False)
            self._hand_on(key, None, again=True)
            return decision
        self.record(p, user, window, n, outcome, quota)
        self._hand_on(key, None, again=outcome.admitted < n)
        return self.decision(p, identity, n, now, quota, outcome, degraded=False)

    def _hand_on(
        self, key: tuple[str, str], lead: Decision | list[_Member] | None, *, again: bool = False
    ) -> None:
        """Pass a User's flight on once its call is answered.

        To the first live waiter, with the others as its group; or, with ``again``
        (the call refused, or failed, or its leader left), back to every waiter to
        look again: the refusal cache answers them, or one of them leads anew.
        """
        if isinstance(lead, list):  # a lead handed to a task that is leaving
            for member in lead:
                if member.future is not None and not member.future.done():
                    member.future.set_result(None)
        waiting = self._flights.get(key)
        if not waiting:
            if waiting is not None:  # nobody waited: the flight ends
                del self._flights[key]
            return
        live = [m for m in waiting if m.future is not None and not m.future.done()]
        if again or not live:
            del self._flights[key]
            for member in live:
                assert member.future is not None
                member.future.set_result(None)
            return
        self._flights[key] = []  # the next leader's flight: later requests wait for it
        first = live[0].future
        assert first is not None
        first.set_result(live[1:])

    async def _lead(
        self, p: _Pool, leader: _Member, waiters: list[_Member], real: bool
    ) -> Decision:
        """One store call for the leader's request and its waiters' (one User), answered
        in arrival order; then the flight is handed on."""
        user = leader.identity.user
        now = leader.now
        window = math.floor(now / p.window)
        members: list[_Member] = []
        answers: dict[int, Decision] = {}
        for i, member in enumerate([leader, *waiters]):
            if member.future is not None and member.future.done():
                continue
            if member.future is not None and math.floor(member.now / p.window) != window:
                member.future.set_result(None)  # look again, in its own window
                continue
            answer = self._local_answer(p, member.identity, member.n, member.now, window)
            if answer is None:
                members.append(member)
            elif member.future is None:
                answers[i] = answer
            else:
                member.future.set_result(answer)
        if not members:  # a lease or the cache answered everyone
            self._hand_on((p.name, user), None)
            return answers[0]
        total = sum(m.n for m in members)
        quota = self.quota_for(p, user)
        outcome = await self._take(p, window, user, total, quota, now, real)
        mine: Decision | None = answers.get(0)
        if outcome is None:  # the store failed: every member decides locally
            for m in members:
                decision = self._degraded(p, m.identity, m.n, m.now, window, cache=False)
                if m.future is None:
                    mine = decision
                elif not m.future.done():
                    m.future.set_result(decision)
            self._hand_on((p.name, user), None, again=True)
            assert mine is not None
            return mine
        # Share the admissions out in arrival order; each member sees the counts it
        # would have seen deciding alone (later members' admissions taken off).
        later = outcome.admitted
        for m in members:
            got = min(m.n, later)
            later -= got
            part = Outcome(
                got,
                Reason.ADMITTED if got >= m.n else outcome.reason,
                outcome.used - later,
                outcome.total - later,
            )
            self.record(p, user, window, m.n, part, quota)
            decision = self.decision(p, m.identity, m.n, m.now, quota, part, degraded=False)
            if m.future is None:
                mine = decision
            elif not m.future.done():
                m.future.set_result(decision)
        self._hand_on((p.name, user), None, again=outcome.admitted < total)
        assert mine is not None
        return mine

    async def _take(
        self, p: _Pool, window: int, user: str, n: int, quota: Quota, now: float, real: bool
    ) -> Outcome | None:
        ledger = self._ledgers[p.name]
        batcher = self._batchers.get(p.name)
        try:
            if p.lease is None:
                if batcher is not None:
                    outcome = await batcher.grant(p.name, window, (user, n, n, quota, 0))
                else:
                    outcome = await ledger.take(p.name, window, user, n, quota)
            else:
                want = self.lease_want(p, user, n, now, window)
                earlier = self.take_user_pending(p, window, user)
                try:
                    if batcher is not None:
                        entry = (user, n, want, quota, earlier)
                        outcome = await batcher.grant(p.name, window, entry)
                    else:
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
        for batcher in {id(b): b for b in self._batchers.values()}.values():
            await batcher.close()  # calls in flight answer their waiters first
        for ledger in {id(led): led for led in self._ledgers.values()}.values():
            try:
                await ledger.close()
            except Exception:  # closing a dead connection is not worth a crash
                log.debug("srtm: error closing %s", ledger.uri, exc_info=True)
