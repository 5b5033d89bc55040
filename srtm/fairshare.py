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
from typing import TypeVar

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
    """
    limits: dict[K, float] = {}
    excess: dict[K, float] = {}
    held: list[float] = []
    for u in users:
        d = demands.get(u, 0.0)
        f = guarantees.get(u, 0.0)
        limits[u] = f
        if d > f:
            excess[u] = d - f
            held.append(f)
        else:
            held.append(d)
    spare = budget - _total(held)
    if spare > 0 and excess:
        extra = _fill(excess, weights, spare)
        for u, e in excess.items():
            d, f = demands[u], guarantees.get(u, 0.0)
            # A satisfied claimant's limit is its demand exactly (a + (d - a) may round).
            limits[u] = d if extra[u] >= e else min(d, f + extra[u])

    if headroom and limits:
        leftover = budget - _total(demands.get(u, 0.0) for u in limits)
        if leftover > 0:
            top = max(weights.get(u, 0.0) for u in limits)
            # Weights scaled to at most 1, so that their sum cannot overflow.
            scaled = [weights.get(u, 0.0) / top if top > 0 else 1.0 for u in limits]
            total_weight = math.fsum(scaled)
            for u, w in zip(list(limits), scaled, strict=True):
                share = leftover * (w / total_weight)
                limits[u] = max(guarantees.get(u, 0.0), demands.get(u, 0.0) + share)
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


def _fill(excess: Mapping[K, float], weights: Mapping[K, float], spare: float) -> dict[K, float]:
    """Water-fill *spare* (> 0) over *excess*, positive weights first; inputs are valid."""
    if spare >= _total(excess.values()):
        return dict(excess)
    extra: dict[K, float] = {}
    positive = [(u, e, weights.get(u, 0.0)) for u, e in excess.items() if weights.get(u, 0.0) > 0]
    left = _fill_weighted(positive, spare, extra)
    zero = [(u, e, 1.0) for u, e in excess.items() if not weights.get(u, 0.0) > 0]
    _fill_weighted(zero, left, extra)
    return {u: extra[u] for u in excess}


def _fill_weighted(
    claims: list[tuple[K, float, float]], spare: float, out: dict[K, float]
) -> float:
    """Water-fill *spare* over (user, excess, weight > 0) claims into *out*; return what is left.

    Claims are taken in order of the level ``e/w`` at which they are satisfied; the
    first that the rest of the spare cannot satisfy fixes the level for it and every
    later claim, which then share that rest in proportion to their weights.
    """
    if not claims:
        return spare
    # Only the weights' ratios matter: scaling them to at most 1 keeps their sums finite,
    # and ordering by log(e) - log(w) keeps e/w from overflowing for tiny weights.
    top = max(w for _, _, w in claims)
    ordered = sorted(
        claims, key=lambda claim: math.log(claim[1]) - math.log(claim[2]) if claim[1] else -math.inf
    )
    order = [(u, e, w / top) for u, e, w in ordered]
    # Suffix sums of the weights: adding up from the back never cancels, unlike
    # subtracting satisfied weights from a running total.
    rest = [0.0] * (len(order) + 1)
    for i in range(len(order) - 1, -1, -1):
        rest[i] = rest[i + 1] + order[i][2]
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
