"""Fair sharing of a budget among Users: weighted max-min water-filling with guarantees.

Each User ``u`` has a demand ``d_u``, a guarantee (allocation) ``a_u`` and a weight
``w_u`` (default ``a_u``). Given a budget ``B``:

1. every User is guaranteed ``g_u = min(d_u, a_u)``;
2. the spare ``S = B - Σ g_u``, if positive, is shared among the *claimants*
   (``d_u > a_u``) in proportion to ``w_u``, never giving one more than its excess
   ``e_u = d_u - a_u``: the water level ``λ`` solves
   ``Σ min(e_u, λ·w_u) = min(S, Σ e_u)``. Claimants of weight 0 are filled only after
   every positive-weight claimant is satisfied, then max-min with equal weights;
3. ``s_u = a_u + min(e_u, λ·w_u)`` for claimants, ``s_u = a_u`` for everyone else: a
   User within its guarantee keeps the whole guarantee as its limit;
4. with ``headroom`` (the default), when ``Σ d_u < B`` the leftover ``L = B - Σ d_u`` is
   handed out in proportion to the weights over all Users (equally if they are all 0):
   ``s_u = max(a_u, d_u + L·w_u/Σ w)``, so a User can grow between two recomputations.

Guarantees adding up to more than ``B`` (over-subscription) are still returned as they
are; reporting that, and the hard cap on the total, are the caller's business.

The functions are pure (no I/O, no clock, no randomness) and cost O(n log n).
"""

# Hand-written on purpose: no well-kept Python library offers weighted max-min sharing
# with per-User guarantees and demand caps as a function (Doorman and Kubernetes' flow
# control each carry their own variant inside their Go code), and the algorithm is only
# a sort and one pass, checked against their tests (tests/test_fairshare.py).

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from itertools import accumulate, compress, repeat
from operator import add, gt, mul, sub
from typing import Generic, TypeVar

__all__ = ["fair_share", "share_valid", "water_level"]

K = TypeVar("K", bound=Hashable)


def fair_share(
    budget: float,
    demands: Mapping[K, float],
    guarantees: Mapping[K, float],
    weights: Mapping[K, float] | None = None,
    *,
    headroom: bool = True,
) -> dict[K, float]:
    """Each User's limit ``s_u`` for one control period (see the module docstring).

    The Users are the union of the keys of *demands* and *guarantees*; a missing demand,
    guarantee or (when *weights* is given) weight counts as 0. Weights default to the
    guarantees. Every value must be finite and >= 0, else ``ValueError`` naming the User.
    Returns a new dict with a float for every User, in order of first appearance.
    """
    budget = _checked("budget", budget)
    _check_all("demand", demands)
    _check_all("guarantee", guarantees)
    if weights is not None:
        _check_all("weight", weights)

    users = list(dict.fromkeys([*demands, *guarantees]))
    demand = {u: float(demands.get(u, 0.0)) for u in users}
    floor = {u: float(guarantees.get(u, 0.0)) for u in users}
    weight = dict(floor) if weights is None else {u: float(weights.get(u, 0.0)) for u in users}
    return share_valid(budget, users, demand, floor, weight, headroom=headroom)


def share_valid(
    budget: float,
    users: Iterable[K],
    demands: Mapping[K, float],
    guarantees: Mapping[K, float],
    weights: Mapping[K, float],
    *,
    headroom: bool = True,
) -> dict[K, float]:
    """:func:`fair_share` over ``users`` without checking its inputs, for a caller whose
    figures are valid by construction (the governor, every control period).

    A User missing from a mapping counts 0 there; every value must be a finite float
    >= 0 (not checked). ``weights`` is required: pass ``guarantees`` for the default.
    A caller that shares among the same Users again and again keeps a :class:`Sharing`.
    """
    return Sharing(users, guarantees, weights)(budget, demands, headroom=headroom)


class Sharing(Generic[K]):
    """:func:`share_valid` among a fixed set of Users with fixed guarantees and weights.

    What depends on them alone (each User's guarantee, the log of its weight, its part
    of any headroom) is computed once here, and each call runs its passes over the
    Users in C (``map``, ``math.fsum``), leaving Python only the claimants: the
    governor keeps one per policy and calls it every control period. The results are
    :func:`share_valid`'s to the last bit (it is built on this).
    """

    __slots__ = ("_base", "_fractions", "_guarantees", "_log_weight", "_users", "_weights")

    def __init__(
        self, users: Iterable[K], guarantees: Mapping[K, float], weights: Mapping[K, float]
    ) -> None:
        self._users = list(dict.fromkeys(users))
        self._guarantees = [guarantees.get(u, 0.0) for u in self._users]
        self._base = dict(zip(self._users, self._guarantees, strict=True))
        self._weights = weights
        self._log_weight = {
            u: math.log(w) for u in self._users for w in [weights.get(u, 0.0)] if w > 0
        }
        # The headroom's split: weights scaled to at most 1, so that their sum cannot
        # overflow, and each one's fraction of their sum.
        top = max((weights.get(u, 0.0) for u in self._users), default=0.0)
        scaled = [weights.get(u, 0.0) / top if top > 0 else 1.0 for u in self._users]
        total_weight = math.fsum(scaled)
        self._fractions = [w / total_weight for w in scaled]

    def __call__(
        self, budget: float, demands: Mapping[K, float], *, headroom: bool = True
    ) -> dict[K, float]:
        """Each User's limit for ``budget`` and ``demands`` (see :func:`share_valid`)."""
        users, floors = self._users, self._guarantees
        wanted = list(map(demands.get, users, repeat(0.0)))
        if headroom and users:
            leftover = budget - _total(wanted)
            if leftover > 0:
                # Every demand fits with room to spare, so every claimant is satisfied
                # and the headroom sets every limit: max(a, d + L x w / Σw).
                shares = map(mul, repeat(leftover), self._fractions)
                return dict(zip(users, map(max, floors, map(add, wanted, shares)), strict=True))
        limits = dict(self._base)
        spare = budget - _total(map(min, wanted, floors))  # Σ min(d, a)
        if spare > 0:
            claimants = list(compress(users, map(gt, wanted, floors)))
            if claimants:
                excess = {u: demands[u] - self._base[u] for u in claimants}
                if spare >= _total(excess.values()):  # every claimant satisfied
                    for u in claimants:
                        limits[u] = demands[u]
                else:
                    extra = _fill(excess, self._weights, spare, self._log_weight)
                    for u, e in excess.items():
                        d, f = demands[u], self._base[u]
                        # A satisfied claimant's limit is its demand exactly (a + (d - a)
                        # may round).
                        limits[u] = d if extra[u] >= e else min(d, f + extra[u])
        return limits


def water_level(
    excess: Mapping[K, float], weights: Mapping[K, float], spare: float
) -> dict[K, float]:
    """The extra each claimant gets when *spare* is water-filled over its *excess*.

    ``extra_u = min(e_u, λ·w_u)`` with the level ``λ`` such that the extras add up to
    ``min(spare, Σ e_u)``. Claimants whose weight is 0 (or missing from *weights*) get
    something only once every positive-weight claimant is satisfied, then share what is
    left max-min with equal weights. A *spare* <= 0 gives every claimant 0. All values
    must be finite and >= 0 (*spare* only finite), else ``ValueError``.
    """
    _check_all("excess", excess)
    _check_all("weight", weights)
    if not math.isfinite(spare):
        raise ValueError(f"spare must be finite, got {spare!r}")
    if spare <= 0:
        return {u: 0.0 for u in excess}
    return _fill(
        {u: float(e) for u, e in excess.items()},
        {u: float(weights.get(u, 0.0)) for u in excess},
        float(spare),
    )


def _fill(
    excess: Mapping[K, float],
    weights: Mapping[K, float],
    spare: float,
    log_weight: Mapping[K, float] | None = None,
) -> dict[K, float]:
    """Water-fill *spare* (> 0) over *excess*, positive weights first; inputs are valid.

    ``log_weight`` holds ``log(w)`` of the positive weights when the caller has it.
    """
    if spare >= _total(excess.values()):
        return dict(excess)
    extra: dict[K, float] = {}
    positive = [(u, e, w) for u, e in excess.items() for w in [weights.get(u, 0.0)] if w > 0]
    left = _fill_weighted(positive, spare, extra, log_weight)
    zero = [(u, e, 1.0) for u, e in excess.items() if not weights.get(u, 0.0) > 0]
    _fill_weighted(zero, left, extra)
    return {u: extra[u] for u in excess}


def _fill_weighted(
    claims: list[tuple[K, float, float]],
    spare: float,
    out: dict[K, float],
    log_weight: Mapping[K, float] | None = None,
) -> float:
    """Water-fill *spare* over (user, excess, weight > 0) claims into *out*; return what is left.

    Claims are taken in order of the level ``e/w`` at which they are satisfied; the
    first that the rest of the spare cannot satisfy fixes the level for it and every
    later claim, which then share that rest in proportion to their weights.
    ``log_weight``, when given, holds ``log(w)`` of every claim's weight.
    """
    if not claims:
        return spare
    # Only the weights' ratios matter: scaling them to at most 1 keeps their sums finite,
    # and ordering by log(e) - log(w) keeps e/w from overflowing for tiny weights.
    top = max(w for _, _, w in claims)
    if log_weight is None:
        ordered = sorted(
            claims,
            key=lambda claim: math.log(claim[1]) - math.log(claim[2]) if claim[1] else -math.inf,
        )
    else:  # the logs of the weights known: the keys computed in C (excesses are > 0)
        keys = list(
            map(
                sub,
                map(math.log, [e for _, e, _ in claims]),
                map(log_weight.__getitem__, [u for u, _, _ in claims]),
            )
        )
        ordered = [claims[i] for i in sorted(range(len(claims)), key=keys.__getitem__)]
    order = [(u, e, w / top) for u, e, w in ordered]
    # Suffix sums of the weights: adding up from the back never cancels, unlike
    # subtracting satisfied weights from a running total.
    rest = list(accumulate(reversed([w for _, _, w in order])))
    rest.reverse()
    rest.append(0.0)
    for i, (user, e, w) in enumerate(order):
        if rest[i] == 0:  # the weights left are too small to scale with the top one
            return _fill_weighted(ordered[i:], spare, out)
        if e <= spare * (w / rest[i]):
            out[user] = e
            spare = max(0.0, spare - e)
            continue
        for later, later_e, later_w in order[i:]:
            out[later] = min(later_e, spare * (later_w / rest[i]))
        return 0.0
    return spare


def _total(values: Iterable[float]) -> float:
    """Exact-as-possible sum of non-negative floats; ``inf`` if it overflows."""
    try:
        return math.fsum(values)
    except OverflowError:
        return math.inf


def _check_all(what: str, values: Mapping[K, float]) -> None:
    for user, value in values.items():
        _checked(f"{what} of user {user!r}", value)


def _checked(name: str, value: float) -> float:
    """*value* as a float, or ``ValueError`` saying *name* is not finite and >= 0."""
    number = float(value)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return number
