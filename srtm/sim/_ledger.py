"""A ledger for the simulator: the core's decision on per-window counters it can read.

:class:`SimLedger` implements the :class:`srtm.ledger.Ledger` protocol like
:class:`srtm.ledger.MemoryLedger` (dicts by pool and window, windows the governor no
longer reads forgotten) and decides with the very function every ledger uses,
:func:`srtm.ledger.admit_count`. It adds what the simulator's bulk path needs and the
core's ledger does not offer: a window's counts so far (:meth:`SimLedger.counts`), and
counting offers already proved admitted (:meth:`SimLedger.admit_all`). Tests hold it
equal to ``MemoryLedger`` and to the middleware on the same requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from srtm.ledger import Outcome, admit_count

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from srtm.ledger import Quota

__all__ = ["SimLedger"]

# Windows kept behind the one the governor reads (MemoryLedger keeps the same).
_KEEP = 2
_EMPTY: dict[str, int] = {}


class _Window:
    __slots__ = ("admitted", "most", "offered", "total")

    def __init__(self) -> None:
        self.offered: dict[str, int] = {}
        self.admitted: dict[str, int] = {}
        self.total = 0
        self.most = 0  # the most any one User has had admitted


class SimLedger:
    """Per-window counters in dicts: one process, a virtual clock, no expiry on real time."""

    uri = "sim://"

    def __init__(self) -> None:
        self._windows: dict[tuple[str, int], _Window] = {}

    def _window(self, pool: str, window: int) -> _Window:
        slot = (pool, window)
        found = self._windows.get(slot)
        if found is None:
            found = self._windows[slot] = _Window()
        return found

    def take(self, pool: str, window: int, user: str, n: int, quota: Quota) -> Outcome:
        """Count ``n`` offered requests of ``user`` and admit as many as the quota allows."""
        w = self._window(pool, window)
        w.offered[user] = w.offered.get(user, 0) + n
        used = w.admitted.get(user, 0)
        k, reason = admit_count(n, used, w.total, quota)
        if k:
            used += k
            w.admitted[user] = used
            w.total += k
            if used > w.most:
                w.most = used
        return Outcome(k, reason, used, w.total)

    def counts(self, pool: str, window: int) -> tuple[Mapping[str, int], int, int]:
        """(admitted per User, admitted total, the most one User has) of a window so far."""
        found = self._windows.get((pool, window))
        return (found.admitted, found.total, found.most) if found is not None else (_EMPTY, 0, 0)

    def admit_all(self, pool: str, window: int, offers: Sequence[tuple[str, int]]) -> None:
        """Count offers that the caller has proved :func:`admit_count` admits in full."""
        w = self._window(pool, window)
        offered, admitted = w.offered, w.admitted
        total, most = w.total, w.most
        if not offered and not admitted:
            # A window's first offers (the bulk path's usual case): dict operations in C.
            fresh = dict(offers)
            if len(fresh) == len(offers):  # each User once
                offered.update(fresh)
                admitted.update(fresh)
                w.total = total + sum(fresh.values())
                w.most = max(most, max(fresh.values(), default=0))
                return
        for user, n in offers:
            offered[user] = offered.get(user, 0) + n
            used = admitted[user] = admitted.get(user, 0) + n
            total += n
            if used > most:
                most = used
        w.total, w.most = total, most

    def flush_and_read(
        self, pool: str, pending: Mapping[int, Mapping[str, int]], window: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Add locally counted offered requests, then read the offered counts of the
        previous and the current window."""
        windows = self._windows
        for slot_window, counts in pending.items():
            offered = self._window(pool, slot_window).offered
            for user, count in counts.items():
                offered[user] = offered.get(user, 0) + count
        for slot in [s for s in windows if s[0] == pool and s[1] < window - _KEEP]:
            del windows[slot]
        previous = windows.get((pool, window - 1))
        current = windows.get((pool, window))
        # The live dicts, not copies: the gate only reads them before the next decision.
        return (
            previous.offered if previous is not None else {},
            current.offered if current is not None else {},
        )

    def close(self) -> None:
        """Forget every counter."""
        self._windows.clear()
