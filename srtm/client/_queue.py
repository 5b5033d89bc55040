"""The outgoing queue: one heap per priority class, plus SRs waiting to be retried.

Each SR carries a key fixed when it is submitted, ``(class * aging + submitted_at, seq)``
(or ``(class, seq)`` without aging), so the next SR is the one with the smallest key
among the heads of the class heaps: FIFO within a class, and linear aging across classes.
An SR refused by the gateway comes back with its key unchanged: it takes its old place,
and whatever was submitted during the pause is ordered against it fairly. SRs waiting
for a retry sit in a separate heap by the time they may go again.

Removal is lazy (an entry remembers which push is current), so cancelling is O(1) and
every operation O(log n) amortised. Pure and not thread-safe: the client locks.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, Protocol, TypeVar

__all__ = ["Queued", "SRQueue"]


class Queued(Protocol):
    """What the queue needs of an entry."""

    cls: int
    key: tuple[float, int]
    bulk: bool
    qtoken: int


E = TypeVar("E", bound=Queued)

_tokens = itertools.count(1)


class SRQueue(Generic[E]):
    """Ready SRs by class and key; deferred SRs by the time they may go."""

    __slots__ = ("_deferred", "_depth", "_n_deferred", "_ready", "_total")

    def __init__(self) -> None:
        # (key's primary, key's seq, token, entry): the key flattened, so the heap compares
        # floats and ints, not tuples of them (a measurable share of a push and a pop).
        self._ready: dict[int, list[tuple[float, int, int, E]]] = {}
        self._deferred: list[tuple[float, int, int, E]] = []
        self._depth: dict[int, int] = {}
        self._n_deferred = 0
        self._total = 0  # sum(self._depth.values()), kept: len() is asked once per SR

    # -- adding -------------------------------------------------------------------------

    def push(self, entry: E) -> None:
        """Queue an SR as ready, in its place."""
        token = entry.qtoken = next(_tokens)
        primary, seq = entry.key
        heapq.heappush(self._ready.setdefault(entry.cls, []), (primary, seq, token, entry))
        self._depth[entry.cls] = self._depth.get(entry.cls, 0) + 1
        self._total += 1

    def defer(self, entry: E, until: float) -> None:
        """Hold an SR until ``until``, then make it ready again in its place."""
        entry.qtoken = -next(_tokens)  # negative: deferred
        heapq.heappush(self._deferred, (until, entry.key[1], entry.qtoken, entry))
        self._depth[entry.cls] = self._depth.get(entry.cls, 0) + 1
        self._total += 1
        self._n_deferred += 1

    def promote(self, now: float) -> None:
        """Make every deferred SR whose time has come ready."""
        while self._deferred:
            until, _, token, entry = self._deferred[0]
            if entry.qtoken != token:
                heapq.heappop(self._deferred)
                continue
            if until > now:
                break
            heapq.heappop(self._deferred)
            self._n_deferred -= 1
            self._depth[entry.cls] -= 1
            self._total -= 1
            self.push(entry)

    # -- taking -------------------------------------------------------------------------

    def _head(self, cls: int) -> E | None:
        heap = self._ready.get(cls)
        while heap:
            _, _, token, entry = heap[0]
            if entry.qtoken == token:
                return entry
            heapq.heappop(heap)
        return None

    def best(self, *, bulk: bool = True) -> E | None:
        """The next SR to send (``bulk=False``: the next that is not bulk)."""
        chosen: E | None = None
        for cls in self._ready:
            head = self._head(cls)
            if head is None or (head.bulk and not bulk):
                continue
            if chosen is None or head.key < chosen.key:
                chosen = head
        return chosen

    def remove(self, entry: E) -> bool:
        """Take an SR out, wherever it waits; False if it was not queued."""
        if entry.qtoken == 0:
            return False
        if entry.qtoken < 0:
            self._n_deferred -= 1
        self._depth[entry.cls] -= 1
        self._total -= 1
        entry.qtoken = 0
        return True

    def next_wake(self) -> float | None:
        """When the earliest deferred SR may go, or None."""
        while self._deferred:
            until, _, token, entry = self._deferred[0]
            if entry.qtoken == token:
                return until
            heapq.heappop(self._deferred)
        return None

    # -- looking ------------------------------------------------------------------------

    def depth(self) -> dict[int, int]:
        """SRs waiting per class (ready or deferred), classes with none left out."""
        return {cls: n for cls, n in sorted(self._depth.items()) if n}

    @property
    def deferred(self) -> int:
        """SRs waiting for a retry."""
        return self._n_deferred

    def __len__(self) -> int:
        return self._total

    def drain(self) -> list[E]:
        """Remove and return every queued SR, deferred ones included, in key order."""
        entries: list[E] = []
        for heap in self._ready.values():
            entries.extend(e for _, _, token, e in heap if e.qtoken == token)
        entries.extend(e for _, _, token, e in self._deferred if e.qtoken == token)
        entries.sort(key=lambda e: e.key)
        self._ready.clear()
        self._deferred.clear()
        self._depth.clear()
        self._n_deferred = 0
        self._total = 0
        for entry in entries:
            entry.qtoken = 0
        return entries
