"""Each User's sender in aggregate: a queue per priority class, or an open loop.

A :class:`ClientState` is what :class:`srtm.client` does, counted rather than enacted
SR by SR: SRs wait in one FIFO per class (cohorts of ``[arrival time, count]``), the
most urgent go first, a refused SR stays queued, and a refusal pauses the whole User
until ``Retry-After`` (or a backoff with full jitter when there is none). An aggregate
offer of ``n`` SRs of which the gate admits ``k`` admits the first ``k`` in the
client's order, as sending them one by one in that order would.

:class:`OpenLoopState` offers whatever arrives and forgets what is refused.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

    from srtm.sim._scenario import Client

__all__ = ["ClientState", "OpenLoopState", "Recorder", "Sender"]

_EPS = 1e-9


class Recorder:
    """Figures every sender of one run adds to: latency of the priority class, backlogs."""

    def __init__(self, classes: int, bins: int, resolution: float) -> None:
        self.backlog = [0] * classes  # SRs queued now, per class index
        self.lat_count = [0] * bins  # priority-class SRs admitted in each bin of time
        self.lat_sum = [0.0] * bins  # ... and their waiting time added up (s)
        self.lat_max = [0.0] * bins
        self.hist: dict[int, int] = {}  # waiting time in units of resolution -> count
        self.resolution = resolution
        self.class_wait = [0.0] * classes  # total waiting time per class (s)


class Sender:
    """What the runner asks of a User's sender (see the two kinds below)."""

    __slots__ = ("lost", "paused_until", "priority_admitted", "priority_wait_max", "size")

    def __init__(self) -> None:
        self.size = 0  # SRs queued (not counting those that arrived in this slice)
        self.paused_until = 0.0
        self.lost = 0
        self.priority_admitted = 0
        self.priority_wait_max = 0.0

    def arrive(self, counts: Sequence[int], total: int, now: float) -> None:
        raise NotImplementedError

    def offer(self, now: float, cap: int) -> int:
        raise NotImplementedError

    def settle(self, n: int, k: int, retry_after: int | None, now: float, lat_bin: int) -> None:
        raise NotImplementedError

    def sleep_through(self, per_class: Sequence[Sequence[int]], times: Sequence[float]) -> None:
        """Queue a window's arrivals (per class, per slice at ``times``) while paused
        through all of it: what :meth:`arrive` then :meth:`offer` do slice by slice."""
        for k, now in enumerate(times):
            counts = [row[k] for row in per_class]
            total = sum(counts)
            if total:
                self.arrive(counts, total, now)
            self.offer(now, 0)

    def mark(self, now: float) -> None:
        """Start timing how long the SRs queued now take to drain (per class)."""

    def drained(self) -> list[float | None]:
        """When each class's SRs queued at the last mark had all been admitted."""
        return []

    def queued_by_class(self) -> list[int]:
        """SRs still queued, per class index (none for an open loop)."""
        return []


class OpenLoopState(Sender):
    """Offers what arrives; refused SRs are lost."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        super().__init__()
        self._pending = 0

    def arrive(self, counts: Sequence[int], total: int, now: float) -> None:
        self._pending += total

    def offer(self, now: float, cap: int) -> int:
        return self._pending

    def settle(self, n: int, k: int, retry_after: int | None, now: float, lat_bin: int) -> None:
        self.lost += n - k
        self._pending -= n


class ClientState(Sender):
    """srtm.client in aggregate: per-class FIFO queues, urgent first, obeys Retry-After."""

    __slots__ = (
        "_attempt",
        "_backlog",
        "_base",
        "_cap",
        "_drained",
        "_fresh",
        "_fresh_at",
        "_fresh_total",
        "_jitter",
        "_keys",
        "_old",
        "_order",
        "_pri",
        "_quantum",
        "_queues",
        "_ratio",
        "_rec",
        "_rng",
    )

    def __init__(
        self,
        spec: Client,
        class_values: Sequence[int],
        priority_index: int,
        recorder: Recorder,
        rng: random.Random,
        quantum: float = 0.0,
    ) -> None:
        super().__init__()
        n = len(class_values)
        self._queues: list[deque[list[float]]] = [deque() for _ in range(n)]
        self._backlog = [0] * n
        self._fresh: Sequence[int] | None = None
        self._fresh_total = 0
        self._fresh_at = 0.0
        self._pri = priority_index
        self._rec = recorder
        self._rng = rng
        self._attempt = 0
        self._base, self._cap = spec.backoff_initial, spec.backoff_max
        self._jitter, self._ratio = spec.jitter, spec.jitter_ratio
        self._quantum = quantum  # the simulator's slice: jitter is rounded down to it
        # Order of service: strict priority, aging (class * aging + arrival), or FIFO.
        if not spec.priorities:
            self._order, self._keys = "fifo", [0.0] * n
        elif spec.aging is not None:
            self._order, self._keys = "aging", [v * spec.aging for v in class_values]
        else:
            self._order, self._keys = "strict", [0.0] * n
        self._old: list[int] = [0] * n
        self._drained: list[float | None] = []

    # -- arrivals and offers -------------------------------------------------------------

    def arrive(self, counts: Sequence[int], total: int, now: float) -> None:
        if self._fresh is not None:
            self._queue_fresh()
        if self.size == 0:
            # Kept aside: sent at once and all admitted, they never touch a queue.
            self._fresh, self._fresh_total, self._fresh_at = counts, total, now
            return
        self._push(counts, now)

    def _push(self, counts: Sequence[int], now: float) -> None:
        backlog, queues, rec = self._backlog, self._queues, self._rec.backlog
        for c, count in enumerate(counts):
            if count:
                queues[c].append([now, count])
                backlog[c] += count
                rec[c] += count
                self.size += count

    def sleep_through(self, per_class: Sequence[Sequence[int]], times: Sequence[float]) -> None:
        # Paused, a client with SRs queued only queues what arrives (arrive() pushes it,
        # offer() sends nothing): a cohort per slice, class by class.
        if self._fresh is not None:
            self._queue_fresh()
        backlog, queues, rec = self._backlog, self._queues, self._rec.backlog
        for c, row in enumerate(per_class):
            append, count = queues[c].append, 0
            for now, n in zip(times, row, strict=True):
                if n:
                    append([now, n])
                    count += n
            if count:
                backlog[c] += count
                rec[c] += count
                self.size += count

    def _queue_fresh(self) -> None:
        fresh = self._fresh
        assert fresh is not None
        self._fresh = None
        self._push(fresh, self._fresh_at)

    def offer(self, now: float, cap: int) -> int:
        if now < self.paused_until - _EPS:
            if self._fresh is not None:
                self._queue_fresh()
            return 0
        return min(self.size + (self._fresh_total if self._fresh is not None else 0), cap)

    # -- outcomes ------------------------------------------------------------------------

    def settle(self, n: int, k: int, retry_after: int | None, now: float, lat_bin: int) -> None:
        fresh = self._fresh
        if fresh is not None and self.size == 0 and k == n == self._fresh_total:
            # The common case: everything that arrived went through at once.
            self._fresh = None
            pri = self._pri
            if pri >= 0 and fresh[pri]:
                count = fresh[pri]
                rec = self._rec
                rec.lat_count[lat_bin] += count
                rec.hist[0] = rec.hist.get(0, 0) + count
                self.priority_admitted += count
            self._attempt = 0
            return
        if fresh is not None:
            self._queue_fresh()
        if k:
            self._pop(k, now, lat_bin)
        if k < n:
            if retry_after is not None:
                spread = max(self._jitter, self._ratio * retry_after)
                extra = self._rng.uniform(0.0, spread) if spread else 0.0
                if self._quantum:
                    extra = math.floor(extra / self._quantum) * self._quantum
                self.paused_until = now + retry_after + extra
            else:
                ceiling = min(self._cap, self._base * 2.0**self._attempt)
                self.paused_until = now + self._rng.uniform(0.0, ceiling)
                self._attempt += 1
        else:
            self._attempt = 0

    def _pop(self, k: int, now: float, lat_bin: int) -> None:
        """Admit the ``k`` most urgent queued SRs."""
        queues, n = self._queues, len(self._queues)
        if self._order == "strict":
            for c in range(n):
                if k == 0:
                    break
                if self._backlog[c]:
                    k -= self._take(c, min(k, self._backlog[c]), now, lat_bin)
            return
        keys = self._keys
        while k:
            best, best_key = -1, 0.0
            for c in range(n):
                q = queues[c]
                if q:
                    key = keys[c] + q[0][0]
                    if best < 0 or key < best_key:
                        best, best_key = c, key
            if best < 0:
                return
            # Take from the best class until another class's head would rank first.
            k -= self._take(best, min(k, int(queues[best][0][1])), now, lat_bin)

    def _take(self, c: int, want: int, now: float, lat_bin: int) -> int:
        """Pop ``want`` SRs from class ``c``'s head cohorts; return how many.

        Records what each cohort waited into the :class:`Recorder` (every class's total
        wait; for the priority class also its latency count, sum, worst and histogram),
        added up in locals and stored once per call.
        """
        q, rec = self._queues[c], self._rec
        got = 0
        class_wait = rec.class_wait[c]
        if c != self._pri:
            while got < want:
                cohort = q[0]
                count = int(cohort[1])
                take = count if count <= want - got else want - got
                class_wait += (now - cohort[0]) * take
                if take == count:
                    q.popleft()
                else:
                    cohort[1] = count - take
                got += take
        else:
            lat_sum, lat_max, hist = rec.lat_sum[lat_bin], rec.lat_max[lat_bin], rec.hist
            resolution, wait_max = rec.resolution, self.priority_wait_max
            while got < want:
                cohort = q[0]
                count = int(cohort[1])
                take = count if count <= want - got else want - got
                wait = now - cohort[0]
                class_wait += wait * take
                lat_sum += wait * take
                if wait > lat_max:
                    lat_max = wait
                key = round(wait / resolution)
                hist[key] = hist.get(key, 0) + take
                if wait > wait_max:
                    wait_max = wait
                if take == count:
                    q.popleft()
                else:
                    cohort[1] = count - take
                got += take
            rec.lat_count[lat_bin] += got
            rec.lat_sum[lat_bin], rec.lat_max[lat_bin] = lat_sum, lat_max
            self.priority_admitted += got
            self.priority_wait_max = wait_max
        rec.class_wait[c] = class_wait
        self._backlog[c] -= got
        rec.backlog[c] -= got
        self.size -= got
        if self._old[c]:
            self._old[c] = max(self._old[c] - got, 0)
            if not self._old[c]:
                self._drained[c] = now
        return got

    # -- drain timing --------------------------------------------------------------------

    def mark(self, now: float) -> None:
        if self._fresh is not None:
            self._queue_fresh()
        self._old = list(self._backlog)
        self._drained = [None if b else now for b in self._backlog]

    def drained(self) -> list[float | None]:
        return list(self._drained)

    def queued_by_class(self) -> list[int]:
        """SRs still queued, per class index."""
        queued = list(self._backlog)
        if self._fresh is not None:
            queued = [q + f for q, f in zip(queued, self._fresh, strict=True)]
        return queued
