"""The two admission engines a scenario runs on, side by side.

:class:`GateEngine` is traffic management: the core's :class:`srtm.Gate` (policy, fair
share, governor and decision: the very objects the middleware uses), ticked every
control period of virtual time, its counters in a :class:`~srtm.sim._ledger.SimLedger`
(or, in an exact run, in the gate's own MemoryLedger).

:class:`FcfsEngine` is the baseline without traffic management: first come, first
served up to capacity and nothing else. Requests offered in the same slice arrive
interleaved, so when a slice would overflow what is left of the window's capacity,
every offer in it gets the same fraction (largest remainder; ties in a pseudo-random
order). A refusal carries no Retry-After: an overloaded back end gives none.

Both take one slice's offers at once. ``fits`` says whether they are all sure to be
admitted in full (then ``admit`` counts them, in no particular order); otherwise
``decide`` takes them one by one in a pseudo-random order that depends only on the
window, the slice and the User, so no User always goes first and the two engines (and
the exact and the fast gate) break ties alike.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Protocol

from srtm.gate import Gate
from srtm.identity import DEFAULT_POOL, Identity
from srtm.ledger import Reason
from srtm.sim._ledger import SimLedger

if TYPE_CHECKING:
    from collections.abc import Sequence
    from collections.abc import Set as AbstractSet

    from srtm.governor import Governor
    from srtm.policy import TrafficPolicy

__all__ = ["Engine", "FcfsEngine", "GateEngine", "Verdict", "slice_order"]

#: (admitted, Retry-After in seconds or None, the reason the rest was refused, HTTP status)
Verdict = tuple[int, int | None, int, int]

_CAPACITY, _ADMITTED = int(Reason.CAPACITY), int(Reason.ADMITTED)
_MASK = (1 << 64) - 1


def slice_order(users: Sequence[int], tick: int) -> list[int]:
    """Positions of ``users`` in a pseudo-random order fixed by ``tick`` and each User."""

    def key(i: int) -> int:
        # splitmix64's finaliser over (tick, user): cheap, and no shared RNG state.
        z = (tick * 0x9E3779B97F4A7C15 + (users[i] + 1) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    return sorted(range(len(users)), key=key)


class Engine(Protocol):
    """What the runner needs from an admission engine."""

    mode: str
    label: str
    decisions: int  # offers decided one by one
    counted: int  # offers cleared by fits() and counted in bulk

    def tick(self, now: float) -> None:
        """A control period starts at ``now``."""
        ...

    def set_capacity(self, capacity: float, now: float) -> None:
        """Change capacity at run time, at ``now``."""
        ...

    @property
    def capacity(self) -> float:
        """The capacity in force (SR/s)."""
        ...

    @property
    def active(self) -> bool:
        """Whether traffic management is engaged."""
        ...

    def fits(self, users: Sequence[int], counts: Sequence[int], now: float) -> bool:
        """True when every offer is sure to be admitted in full, in any order."""
        ...

    def fits_window(self, total: int, most: int, now: float) -> bool:
        """Like :meth:`fits` for a whole window's offers, known only by their total and
        the largest; ``now`` is the window's start and nothing has been offered in it."""
        ...

    def admit(self, users: Sequence[int], counts: Sequence[int], now: float) -> None:
        """Count offers that :meth:`fits` has just cleared."""
        ...

    def decide(
        self, users: Sequence[int], counts: Sequence[int], now: float, order: int
    ) -> list[Verdict]:
        """Admit or refuse each offer, in the pseudo-random order numbered ``order``."""
        ...

    def close(self) -> None:
        """Release what the engine holds."""
        ...


def _count(rate: float, window: float) -> int:
    # The gate's rounding of a pool figure (capacity, budget) to requests per window.
    return math.floor(rate * window + 1e-9)


class GateEngine:
    """Traffic management: ``srtm.Gate`` on the virtual clock.

    With ``exact=False`` (the default) offers that are all certain to be admitted in full
    (:meth:`fits`) are counted straight into the ledger instead of through ``Gate.decide``: with
    traffic management off, a User's quota limit is at least ``budget - reserved``
    (:meth:`srtm.governor.Governor.admission_limit`), so when every User stays within
    that and the window's total within the budget, :func:`srtm.ledger.admit_count`
    admits everything, in any order. The ledger and the governor then see exactly what
    they would have seen; only the per-User statistics of ``Gate.snapshot()`` miss
    those requests. Every other offer goes through ``Gate.decide``; ``exact=True``
    sends them all, and a test holds the two modes equal.
    """

    mode = "tm"
    label = "with traffic management"

    def __init__(
        self,
        policy: TrafficPolicy,
        users: Sequence[tuple[str, str | None]],
        *,
        exact: bool = False,
    ) -> None:
        self.now = 0.0
        # One process, counters in memory: whatever storage the policy names.
        policy = dataclasses.replace(policy, storage="memory://")
        self.ledger = SimLedger()
        # The bulk path reads a window's counts and adds to them, which the gate's
        # MemoryLedger does not offer, so the gate is given the SimLedger. (Exact runs keep
        # the gate's own MemoryLedger.)
        self.gate = Gate(
            policy,
            clock=lambda: self.now,
            background=False,
            ledger_factory=None if exact else lambda _policy: self.ledger,
        )
        self.pool = self.gate.pools[DEFAULT_POOL]
        self.governor: Governor = self.pool.governor
        self.window = policy.window
        self.exact = exact
        self.names = [user for user, _ in users]
        self._everyone = frozenset(self.names)
        self.identities = [Identity(user, version, DEFAULT_POOL) for user, version in users]
        self.decisions = 0  # through Gate.decide
        self.counted = 0  # proved admitted and counted straight into the ledger

    def tick(self, now: float) -> None:
        self.now = now
        self.gate.tick(now=now)

    def set_capacity(self, capacity: float, now: float) -> None:
        self.now = now
        # The outage's start dates the Retry-After the gate advertises through it.
        self.gate.set_capacity(capacity, now=now)

    @property
    def capacity(self) -> float:
        return self.governor.capacity

    @property
    def active(self) -> bool:
        return self.governor.active

    def _floor(self) -> int | None:
        """The least quota limit of any User while traffic management is off, else None."""
        gov = self.governor
        if self.exact or gov.active:
            return None
        # admission_limit(u) = max(g_u, B - (reserved - own_u)) >= B - reserved, and the
        # gate's rounding of it to a count is monotone (see the class docstring).
        return min(
            math.floor((gov.budget - gov.reserved) * self.window - 1e-6),
            _count(gov.capacity, self.window),
        )

    def fits(self, users: Sequence[int], counts: Sequence[int], now: float) -> bool:
        floor = self._floor()
        if floor is None:
            return False
        admitted, total, most = self.ledger.counts(DEFAULT_POOL, math.floor(now / self.window))
        names = self.names
        if total + sum(counts) > self._budget({names[u] for u in users}):
            return False
        if most + max(counts) <= floor:
            return True
        return all(
            admitted.get(names[u], 0) + n <= floor for u, n in zip(users, counts, strict=True)
        )

    def fits_window(self, total: int, most: int, now: float) -> bool:
        floor = self._floor()
        if floor is None:
            return False
        _, so_far, _ = self.ledger.counts(DEFAULT_POOL, math.floor(now / self.window))
        return so_far == 0 and total <= self._budget(self._everyone) and most <= floor

    def _budget(self, names: AbstractSet[str]) -> int:
        """The least window budget these Users face: a collective member the governor has
        not seen yet faces less than the pool's (:meth:`Governor.budget_for`). The count of
        the least rate is the least count: the rounding is monotone."""
        if not names:
            return 0
        return _count(self.governor.least_budget_for(names), self.window)

    def admit(self, users: Sequence[int], counts: Sequence[int], now: float) -> None:
        window = math.floor(now / self.window)
        offers = list(zip(map(self.names.__getitem__, users), counts, strict=True))
        self.ledger.admit_all(DEFAULT_POOL, window, offers)
        self.counted += len(offers)

    def decide(
        self, users: Sequence[int], counts: Sequence[int], now: float, order: int
    ) -> list[Verdict]:
        self.now = now
        decide, identities = self.gate.decide, self.identities
        out: list[Verdict] = [(0, None, _ADMITTED, 200)] * len(users)
        for i in slice_order(users, order):
            n = counts[i]
            d = decide(identities[users[i]], n, now=now)
            # Shadow mode refuses nothing: the requests go through.
            out[i] = (
                (n, None, _ADMITTED, 200)
                if d.shadow
                else (d.admitted, d.retry_after, d.reason, d.status)
            )
        self.decisions += len(users)
        return out

    def close(self) -> None:
        self.gate.close()


class FcfsEngine:
    """No traffic management: first come, first served up to capacity (the baseline)."""

    mode = "fcfs"
    label = "without traffic management (FCFS)"

    def __init__(self, policy: TrafficPolicy) -> None:
        self.window = policy.window
        self._capacity = policy.capacity
        self._current: int | None = None
        self._used = 0
        self.decisions = 0
        self.counted = 0

    def tick(self, now: float) -> None:
        window = math.floor(now / self.window)
        if window != self._current:
            self._current, self._used = window, 0

    def set_capacity(self, capacity: float, now: float) -> None:
        if not (math.isfinite(capacity) and capacity >= 0):
            raise ValueError(f"capacity must be a finite number >= 0, got {capacity!r}")
        self._capacity = float(capacity)

    @property
    def capacity(self) -> float:
        return self._capacity

    @property
    def active(self) -> bool:
        return False

    def fits(self, users: Sequence[int], counts: Sequence[int], now: float) -> bool:
        self.tick(now)
        return sum(counts) <= _count(self._capacity, self.window) - self._used

    def fits_window(self, total: int, most: int, now: float) -> bool:
        self.tick(now)
        return total <= _count(self._capacity, self.window) - self._used

    def admit(self, users: Sequence[int], counts: Sequence[int], now: float) -> None:
        self._used += sum(counts)
        self.counted += len(users)

    def decide(
        self, users: Sequence[int], counts: Sequence[int], now: float, order: int
    ) -> list[Verdict]:
        self.tick(now)
        self.decisions += len(users)
        room = max(_count(self._capacity, self.window) - self._used, 0)
        total = sum(counts)
        if total <= room:
            self._used += total
            return [(n, None, _ADMITTED, 200) for n in counts]
        shares = [n * room // total for n in counts]
        left = room - sum(shares)
        if left:
            # Largest remainders first; ties in the slice's pseudo-random order.
            rank = {i: r for r, i in enumerate(slice_order(users, order))}
            rest = sorted(range(len(counts)), key=lambda i: (-(counts[i] * room % total), rank[i]))
            for i in rest[:left]:
                shares[i] += 1
        self._used += room
        return [
            (k, None, _ADMITTED, 200) if k == n else (k, None, _CAPACITY, 503)
            for k, n in zip(shares, counts, strict=True)
        ]

    def close(self) -> None:
        """Nothing to release."""
