"""Traffic management on and off, and each User's limit, recomputed off the hot path.

The governor is pure state: feed it one window's offered counts per User (refusals
included: a rate of admitted requests alone ratchets down under throttling) and it
smooths demand, switches traffic management on and off with hysteresis and, while on,
shares the budget out with :func:`srtm.fairshare.fair_share`. No I/O and no clock, so
the middleware and the simulator drive the very same object.

Users not named in the policy's allocations form one *collective* by default
(``TrafficPolicy.unknown_users``): the collective competes with the named Users as a
single entity holding ``policy.collective_guarantee``, with its own smoothed demand, and
what it gets is split max-min among its members (hierarchical water-filling). Its
members' shares are rounded down to whole requests per window, largest remainders
first, so however many identities there are, together they never hold more than the
collective does. A member the last recomputation did not see (a new identity) holds no
guarantee, at most the collective's unused share, and only while the pool's total
leaves the named Users' reserved demand untouched (:meth:`Governor.budget_for`).

Cost: a recomputation is O(n log n) in the Users active now (idle unnamed Users are
forgotten once their demand has decayed; at most :data:`MAX_MEMBERS` members are
tracked one by one), guarantees and weights of the named Users are computed once per
policy, and an update that changes no figure changes nothing (same epoch, so the
gate's quota cache stays valid).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from srtm.fairshare import Sharing, share_valid

if TYPE_CHECKING:
    from collections.abc import Mapping
    from collections.abc import Set as AbstractSet

    from srtm.policy import TrafficPolicy

__all__ = ["COLLECTIVE", "MAX_MEMBERS", "Governor", "GovernorState"]

# A User whose smoothed demand has decayed below this (SR/s) and who holds no
# allocation is forgotten, so the set of Users does not grow without bound.
_FORGET_BELOW = 1e-3

#: Most members of the collective tracked one by one; past it only the busiest are, and
#: the rest count as new identities (no guarantee, the collective's unused share at most).
MAX_MEMBERS = 10_000

#: The collective's key among the fair-share entities (never a valid User ID).
COLLECTIVE = "*"


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
    collective_demand: float = 0.0  # smoothed demand of the unnamed Users together
    collective_limit: float | None = None  # their share together while TM is on


class Governor:
    """Smoothed demand, hysteresis and per-User limits for one pool."""

    def __init__(self, policy: TrafficPolicy) -> None:
        self.policy = policy
        self.capacity: float = policy.capacity
        self.active: bool = False
        self.demand: dict[str, float] = {}
        self.limits: dict[str, float] | None = None
        self.reserved: float = 0.0  # Σ min(demand, guarantee): named Users and the collective
        self.collective_demand: float = 0.0
        self.collective_limit: float | None = None
        self.offered: float = 0.0  # the smoothed total hysteresis reads (SR/s)
        self.epoch: int = 0
        self._above = 0
        self._below = 0
        self._hold = 0.0  # seconds traffic management stays on whatever the demand
        self._updates = 0
        # Computed once per policy: the named Users' guarantees and weights.
        self._named = {u: policy.guarantee(u) for u in policy.allocations}
        self._shared = policy.unknown_users != "per_identity"
        self._stranger = 0.0 if self._shared else max(policy.default_allocation, policy.floor)
        self._weights: Mapping[str, float] = policy.weights or {}
        self._entity_g = dict(self._named)
        self._entity_w = {u: policy.weight(u) for u in policy.allocations}
        if self._shared:
            self._entity_g[COLLECTIVE] = self._entity_w[COLLECTIVE] = policy.collective_guarantee
        # The entities are fixed unless each stranger stands alone (per-identity).
        self._sharing = Sharing(self._entity_g, self._entity_g, self._entity_w)
        self._member_level = 0.0  # members are guaranteed min(demand, this level)
        self._reserved_named = 0.0  # Σ min(demand, guarantee) of the named Users
        self._spare = 0.0  # the collective's share no member holds (new members get it)
        self._alpha_for = math.nan  # the elapsed time self._alpha was computed for
        self._alpha = 0.0  # the share of its gap a falling demand closes in that time

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
        policy smooths alike whatever its control period. Costs O(active Users), and
        nothing more when no figure changed.
        """
        if elapsed is None:
            elapsed = self.policy.control_period or self.policy.window
        self._hold = max(0.0, self._hold - elapsed)
        self._updates += 1
        if elapsed != self._alpha_for:
            self._alpha_for = elapsed
            self._alpha = 1.0 - (1.0 - self.policy.smoothing) ** elapsed
        alpha = self._alpha
        per_second = 1.0 / seconds
        named, shared, stranger = self._named, self._shared, self._stranger
        old = self.demand
        demand: dict[str, float] = {}
        own_total = 0.0  # named Users (and per-identity strangers)
        # Σ min(demand, guarantee) of the entities standing alone, added up here in the
        # order _reserve() would, so the figure is the same to the last bit.
        reserved = 0.0
        members_now = 0.0  # the collective's latest rate
        members: list[str] = []
        # Bound methods and conditional expressions rather than max(): this loop runs
        # over every active User every control period.
        previous, guarantee_of = old.get, named.get
        for user, count in offered.items():
            now = count * per_second
            before = previous(user, 0.0)
            if now < before:
                # Fast up, slow down, never below the latest window's figure.
                value = before + alpha * (now - before)
                if not value > now:  # max(now, value), without the call
                    value = now
            else:
                value = now
            g = guarantee_of(user)
            if g is not None:
                demand[user] = value
                own_total += value
                reserved += value if value < g else g
                continue
            if shared:
                members_now += now
            if value >= _FORGET_BELOW:
                demand[user] = value
                if shared:
                    members.append(user)
                else:
                    own_total += value
                    reserved += value if value < stranger else stranger
        # The Users who offered nothing this time: none, usually (a subset test in C).
        if not old.keys() <= offered.keys():
            for user, before in old.items():
                if user in offered:
                    continue
                value = before + alpha * (0.0 - before)  # nothing offered
                if not value > 0.0:  # max(0.0, value), without the call
                    value = 0.0
                g = guarantee_of(user)
                if g is not None:
                    demand[user] = value
                    own_total += value
                    reserved += value if value < g else g
                elif value >= _FORGET_BELOW:
                    demand[user] = value
                    if shared:
                        members.append(user)
                    else:
                        own_total += value
                        reserved += value if value < stranger else stranger
        if len(members) > MAX_MEMBERS:
            keep = set(heapq.nlargest(MAX_MEMBERS, members, key=demand.__getitem__))
            for user in members:
                if user not in keep:
                    del demand[user]
            members = [user for user in members if user in keep]
        collective = self.collective_demand
        if shared:
            before = collective
            collective = (
                members_now
                if members_now >= before
                else max(members_now, before + alpha * (members_now - before))
            )
            if collective < _FORGET_BELOW:
                collective = 0.0
        was_active = self.active
        total = self.offered = own_total + collective
        if not self.active:
            self._above = self._above + 1 if total >= self.budget else 0
            if self._above >= self.policy.engage_after:
                self.active, self._above, self._below = True, 0, 0
        else:
            self._below = self._below + 1 if total < self.policy.release_ratio * self.budget else 0
            if self._below >= self.policy.release_after and self._hold <= 0:
                self.active, self._above, self._below = False, 0, 0
        # Nothing changed, nothing to do: same figures, same epoch (the gate's quotas stay).
        if demand != old or collective != self.collective_demand or self.active != was_active:
            self.demand, self.collective_demand = demand, collective
            self._recompute(reserved, {user: demand[user] for user in members})
        return self.state()

    def _reserve(self) -> tuple[float, dict[str, float]]:
        """From scratch: the named Users' (and strangers') reserved demand, and the members'
        demands, in the order of :attr:`demand` (what :meth:`update` adds up as it goes)."""
        named, shared, stranger = self._named, self._shared, self._stranger
        members: dict[str, float] = {}
        reserved = 0.0
        for user, d in self.demand.items():
            g = named.get(user)
            if g is None:
                if shared:
                    members[user] = d
                    continue
                g = stranger
            reserved += d if d < g else g
        return reserved, members

    def _recompute(
        self, reserved: float | None = None, members: dict[str, float] | None = None
    ) -> None:
        """Reserved demand, the members' guarantees and, while TM is on, every limit.

        :meth:`update` passes the reserved demand and the members it has just added up;
        a capacity change or a hold recomputes them from :attr:`demand`. Either way the
        figures are the same (a property test holds them equal), and the cost is
        O(active Users): guarantees and weights are the ones computed once per policy.
        """
        if reserved is None or members is None:
            reserved, members = self._reserve()
        named, shared = self._named, self._shared
        self._reserved_named = reserved
        guarantee_c = self.policy.collective_guarantee
        if shared:
            reserved += min(self.collective_demand, guarantee_c)
            # The members split the collective's guarantee max-min by demand.
            self._member_level = (
                equal_level(guarantee_c, list(members.values()))
                if members and guarantee_c > 0
                else 0.0
            )
        self.reserved = reserved
        if not self.active:
            self.limits, self.collective_limit, self._spare = None, None, 0.0
            self.epoch += 1
            return
        # Every entity's demand: the sharing reads only the entities' keys, so the
        # members' entries in this copy of the demand are never looked at.
        own = dict(self.demand)
        strangers = [] if shared else [user for user in own if user not in named]
        if shared:
            own[COLLECTIVE] = self.collective_demand
            limits = self._sharing(self.budget, own)
        elif not strangers:
            limits = self._sharing(self.budget, own)
        else:  # per-identity: each stranger an entity of its own
            stranger = self._stranger
            guarantees, weights = dict(self._entity_g), dict(self._entity_w)
            for user in strangers:
                guarantees[user] = stranger
                weights[user] = self._weights.get(user, stranger)
            limits = share_valid(self.budget, guarantees, own, guarantees, weights)
        if shared:
            share = limits.pop(COLLECTIVE)
            self.collective_limit = share
            self._spare = max(0.0, share - self.collective_demand)
            if members:
                # Max-min with equal weights within the collective; each member's part of
                # the collective's guarantee, min(d, level), is below the water line, so
                # the floors change nothing. Any headroom is shared equally.
                wanted = math.fsum(members.values())
                if share >= wanted:
                    extra = (share - wanted) / len(members)
                    split = {u: d + extra for u, d in members.items()}
                else:
                    level = equal_level(share, list(members.values()))
                    split = {u: d if d < level else level for u, d in members.items()}
                limits.update(_whole_requests(split, self.policy.window, self._updates))
        self.limits = limits
        self.epoch += 1

    def member(self, user: str) -> bool:
        """True when ``user`` counts in the collective (not named, and the policy shares)."""
        return self._shared and user not in self._named

    def guarantee(self, user: str) -> float:
        """What ``user`` is guaranteed while TM is on (SR/s).

        A named User: ``max(allocation, floor)``. A collective member: its max-min part of
        the collective's guarantee at the last recomputation (0 for a new identity). With
        ``unknown_users="per_identity"``: ``max(default_allocation, floor)``.
        """
        found = self._named.get(user)
        if found is not None:
            return found
        if not self._shared:
            return self._stranger
        demand = self.demand.get(user, 0.0)
        return demand if demand < self._member_level else self._member_level

    def limit(self, user: str) -> float | None:
        """``user``'s limit in SR/s while traffic management is on, else None (no limit)."""
        if self.limits is None:
            return None
        found = self.limits.get(user)
        if found is not None:
            return found
        # A User first seen since the last recomputation: a named one has its guarantee at
        # once; a new member of the collective, what the collective leaves unused.
        guarantee = self._named.get(user)
        if guarantee is not None:
            return guarantee
        return self._spare if self._shared else self._stranger

    def admission_limit(self, user: str) -> float:
        """The rate at which ``user``'s requests start being refused (SR/s).

        While traffic management is on, its fair-share limit. While it is off, whatever
        keeps the total within the budget when every other User sends what it does now,
        up to its guarantee: ``max(g_u, B - Σ_{o≠u} min(d_o, g_o))``. Nobody is refused
        below that, so nobody is throttled before the aggregate reaches the threshold;
        but a flood that starts between two recomputations is held there at once,
        instead of taking the whole budget from the Users already sending. The
        collective counts as one User here.
        """
        limit = self.limit(user)
        if limit is not None:
            return limit
        guarantee = self.guarantee(user)
        if self.member(user):
            own = min(self.collective_demand, self.policy.collective_guarantee)
        else:
            own = min(self.demand.get(user, 0.0), guarantee)
        return max(guarantee, self.budget - (self.reserved - own))

    def budget_for(self, user: str) -> float:
        """The pool total (SR/s) past which only its guarantee admits ``user``'s requests.

        The budget, except for a member of the collective that the last recomputation
        did not see: a new identity is admitted only while the pool's total leaves room
        for what the named Users within their allocations are sending, so identities
        minted faster than recomputations run cannot take the named Users' guarantees.
        """
        if self._shared and user not in self._named and user not in self.demand:
            return max(0.0, self.budget - self._reserved_named)
        return self.budget

    def least_budget_for(self, users: AbstractSet[str]) -> float:
        """``min(budget_for(u) for u in users)`` for a non-empty set, by set operations.

        The simulator asks it for every User at once, once a window: a membership test
        in C instead of one call per User.
        """
        if self._shared:
            unseen = users - self._named.keys()
            if unseen and not unseen <= self.demand.keys():
                return max(0.0, self.budget - self._reserved_named)
        return self.budget

    def state(self) -> GovernorState:
        """A snapshot for operators and the simulator (read-only views, not copies)."""
        return GovernorState(
            active=self.active,
            capacity=self.capacity,
            budget=self.budget,
            offered=self.offered,
            demand=MappingProxyType(self.demand),
            limits=None if self.limits is None else MappingProxyType(self.limits),
            epoch=self.epoch,
            collective_demand=self.collective_demand,
            collective_limit=self.collective_limit,
        )


def equal_level(budget: float, demands: list[float]) -> float:
    """The water level ``λ`` with ``Σ min(d, λ) = min(budget, Σ d)`` (equal weights).

    ``inf`` when the budget covers every demand. O(n log n): one sort, one pass.
    """
    rest, left = len(demands), budget
    for d in sorted(demands):
        if d * rest > left:
            return left / rest
        left -= d
        rest -= 1
    return math.inf


def _whole_requests(rates: Mapping[str, float], window: float, salt: int) -> dict[str, float]:
    """``rates`` rounded to whole requests per window without adding to their total.

    Each is rounded down; the requests that frees (the total's whole part) go one each
    to the largest remainders, ties broken in an order that changes every update so the
    same member does not always lose. Rounding each up instead would let enough
    members with a fraction of a request each hold far more than the collective.
    """
    counts: dict[str, int] = {}
    remainders: list[tuple[float, int, str]] = []
    total = 0.0
    for user, rate in rates.items():
        x = rate * window
        whole = math.floor(x + 1e-9)
        counts[user] = whole
        total += x
        if x - whole > 1e-9:
            remainders.append((x - whole, hash((salt, user)), user))
    extra = math.floor(total + 1e-9) - sum(counts.values())
    if extra > 0:
        for _, _, user in heapq.nlargest(extra, remainders):
            counts[user] += 1
    return {user: count / window for user, count in counts.items()}
