"""Traffic management on and off, and each User's limit, recomputed off the hot path.

The governor is pure state: feed it one window's offered counts per User (refusals
included: a rate of admitted requests alone ratchets down under throttling) and it
smooths demand, switches traffic management on and off with hysteresis and, while on,
shares the budget out with :func:`srtm.fairshare.fair_share`. No I/O and no clock, so
the middleware and the simulator drive the very same object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from srtm.fairshare import fair_share

if TYPE_CHECKING:
    from collections.abc import Mapping

    from srtm.policy import TrafficPolicy

__all__ = ["Governor", "GovernorState"]

# A User whose smoothed demand has decayed below this (SR/s) and who holds no
# allocation is forgotten, so the set of Users does not grow without bound.
_FORGET_BELOW = 1e-3


@dataclass(frozen=True, slots=True)
class GovernorState:
    """What an operator reads: is traffic management on, and on what figures."""

    active: bool
    capacity: float
    budget: float
    offered: float
    demand: Mapping[str, float]
    limits: Mapping[str, float] | None
    epoch: int


class Governor:
    """Smoothed demand, hysteresis and per-User limits for one pool."""

    def __init__(self, policy: TrafficPolicy) -> None:
        self.policy = policy
        self.capacity = policy.capacity
        self.active = False
        self.demand: dict[str, float] = {}
        self.limits: dict[str, float] | None = None
        self.reserved = 0.0  # Σ min(demand, guarantee) over all Users
        self.epoch = 0
        self._above = 0
        self._below = 0
        self._hold = 0.0  # seconds traffic management stays on whatever the demand

    @property
    def budget(self) -> float:
        """``threshold * capacity`` at the capacity now in force (SR/s)."""
        return self.policy.threshold * self.capacity

    def hold(self, seconds: float) -> None:
        """Engage traffic management and keep it on for at least ``seconds``.

        After an outage the Users' clients are waiting out its Retry-After, so their
        measured demand is low just before they all come back at once: released then,
        the first to return could take the budget from those within their allocation.
        """
        self._hold = max(self._hold, seconds)
        if not self.active:
            self.active, self._above, self._below = True, 0, 0
            self._recompute()

    def set_capacity(self, capacity: float) -> None:
        """Change capacity at run time (a DSP or CSP degradation); 0 stops all admission."""
        if not capacity >= 0 or capacity == float("inf"):
            raise ValueError(f"capacity must be a finite number >= 0, got {capacity!r}")
        self.capacity = float(capacity)
        self._recompute()

    def update(
        self, offered: Mapping[str, float], seconds: float, *, elapsed: float | None = None
    ) -> GovernorState:
        """Take the requests each User offered over the last ``seconds`` and recompute.

        ``elapsed`` is the time since the previous update (default: the control period);
        a falling demand closes ``smoothing`` of its gap per second of it, so the same
        policy smooths alike whatever its control period.
        """
        if elapsed is None:
            elapsed = self.policy.control_period or self.policy.window
        self._hold = max(0.0, self._hold - elapsed)
        alpha = 1.0 - (1.0 - self.policy.smoothing) ** elapsed
        latest = {user: count / seconds for user, count in offered.items()}
        demand: dict[str, float] = {}
        for user in self.demand.keys() | latest.keys():
            now = latest.get(user, 0.0)
            before = self.demand.get(user, 0.0)
            # Fast up, slow down, never below the latest window's figure.
            value = now if now >= before else max(now, before + alpha * (now - before))
            if value >= _FORGET_BELOW or user in self.policy.allocations:
                demand[user] = value
        self.demand = demand
        total = sum(demand.values())
        if not self.active:
            self._above = self._above + 1 if total >= self.budget else 0
            if self._above >= self.policy.engage_after:
                self.active, self._above, self._below = True, 0, 0
        else:
            self._below = self._below + 1 if total < self.policy.release_ratio * self.budget else 0
            if self._below >= self.policy.release_after and self._hold <= 0:
                self.active, self._above, self._below = False, 0, 0
        self._recompute()
        return self.state()

    def _recompute(self) -> None:
        self.reserved = sum(min(d, self.policy.guarantee(u)) for u, d in self.demand.items())
        if self.active:
            users = self.demand.keys() | self.policy.allocations.keys()
            self.limits = fair_share(
                self.budget,
                {u: self.demand.get(u, 0.0) for u in users},
                {u: self.policy.guarantee(u) for u in users},
                {u: self.policy.weight(u) for u in users},
            )
        else:
            self.limits = None
        self.epoch += 1

    def limit(self, user: str) -> float | None:
        """``user``'s limit in SR/s while traffic management is on, else None (no limit)."""
        if self.limits is None:
            return None
        found = self.limits.get(user)
        # A User first seen since the last recomputation still has its guarantee.
        return self.policy.guarantee(user) if found is None else found

    def admission_limit(self, user: str) -> float:
        """The rate at which ``user``'s requests start being refused (SR/s).

        While traffic management is on, its fair-share limit. While it is off, whatever
        keeps the total within the budget when every other User sends what it does now,
        up to its guarantee: ``max(g_u, B - Σ_{o≠u} min(d_o, g_o))``. Nobody is refused
        below that, so nobody is throttled before the aggregate reaches the threshold;
        but a flood that starts between two recomputations is held there at once,
        instead of taking the whole budget from the Users already sending.
        """
        limit = self.limit(user)
        if limit is not None:
            return limit
        guarantee = self.policy.guarantee(user)
        own = min(self.demand.get(user, 0.0), guarantee)
        return max(guarantee, self.budget - (self.reserved - own))

    def state(self) -> GovernorState:
        """A snapshot for operators and the simulator."""
        return GovernorState(
            active=self.active,
            capacity=self.capacity,
            budget=self.budget,
            offered=sum(self.demand.values()),
            demand=dict(self.demand),
            limits=None if self.limits is None else dict(self.limits),
            epoch=self.epoch,
        )
