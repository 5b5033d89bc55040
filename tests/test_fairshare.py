"""Tests for srtm.fairshare: published vectors, hand-worked examples, properties, errors."""

from __future__ import annotations

import math
from copy import deepcopy

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from srtm.fairshare import Sharing, _fill, fair_share, share_valid, water_level

# --------------------------------------------------------------------------------------
# Published vectors: Google Doorman (github.com/youtube/doorman,
# go/server/doorman/algorithm_test.go; algorithm in go/server/doorman/algorithm.go).
#
# FAIR_SHARE is equal-share max-min of the clients' wants over the capacity, each client
# weighted by its number of subclients. That is our function with no guarantees,
# weights = subclients, budget = capacity, demands = wants and headroom=False;
# `shouldGet` is the limit s_u. (Doorman answers one client at a time against a lease
# store preloaded with every client's wants, and redistributes in two rounds only; on
# these vectors that coincides with exact max-min.)
# --------------------------------------------------------------------------------------

# (capacity, {client: (wants, subclients, shouldGet)})
DOORMAN_FAIR_SHARE = {
    # TestFairShare
    "TestFairShare": (120, {"c0": (1000, 1, 55), "c1": (60, 1, 55), "c2": (10, 1, 10)}),
    # TestFairShareLowerExtra
    "TestFairShareLowerExtra": (
        120,
        {"c0": (1000, 1, 60), "c1": (50, 1, 50), "c2": (10, 1, 10)},
    ),
    # TestFairShareWithMultipleSubclients, first call
    "TestFairShareWithMultipleSubclients/1": (
        120,
        {"c0": (1000, 6, 60), "c1": (500, 4, 40), "c2": (200, 2, 20)},
    ),
    # TestFairShareWithMultipleSubclients, second call
    "TestFairShareWithMultipleSubclients/2": (
        1000,
        {"c0": (2000, 10, 200), "c1": (500, 10, 200), "c2": (700, 30, 600)},
    ),
}


@pytest.mark.parametrize("name", list(DOORMAN_FAIR_SHARE))
def test_doorman_fair_share_vectors(name: str) -> None:
    # youtube/doorman go/server/doorman/algorithm_test.go, FairShare (see mapping above).
    capacity, clients = DOORMAN_FAIR_SHARE[name]
    demands = {c: float(wants) for c, (wants, _, _) in clients.items()}
    weights = {c: float(sub) for c, (_, sub, _) in clients.items()}
    expected = {c: float(get) for c, (_, _, get) in clients.items()}
    got = fair_share(capacity, demands, {}, weights, headroom=False)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("name", ["TestFairShare", "TestFairShareLowerExtra"])
def test_doorman_fair_share_vectors_with_default_weights(name: str) -> None:
    # Same vectors, one subclient each: with no guarantees the default weights (the
    # guarantees) are all 0, and all-zero weights share equally, as Doorman does.
    capacity, clients = DOORMAN_FAIR_SHARE[name]
    demands = {c: float(wants) for c, (wants, _, _) in clients.items()}
    expected = {c: float(get) for c, (_, _, get) in clients.items()}
    assert fair_share(capacity, demands, {}, headroom=False) == pytest.approx(expected)


# PROPORTIONAL_SHARE gives each client its equal share capacity·subclients/Σsubclients
# (or its wants, if less) plus a top-up proportional to its need above the equal share,
# extraCapacity/extraNeed. That is our function with guarantees = the equal shares and
# weights = each client's excess max(wants - equal share, 0): the level is then
# min(1, S/Σe), which is Doorman's extraCapacity/extraNeed. Doorman's lease for a client
# under its equal share is its wants, whereas our limit keeps the whole guarantee, so the
# comparison is on the amount served, min(d_u, s_u).
# Only the cases run with preloadStore=true map: those with preloadStore=false (the
# second call of TestProportionalShare and of TestProportionalShareWithMultipleSubclients)
# let each client see only the clients asked before it, so their answers depend on the
# order of the calls, which a one-shot allocation has no counterpart for.
DOORMAN_PROPORTIONAL_SHARE = {
    # TestProportionalShare, first call (preloadStore=true)
    "TestProportionalShare/1": (
        120,
        {"c0": (60, 1, 55), "c1": (60, 1, 55), "c2": (10, 1, 10)},
    ),
    # TestProportionalShareWithMultipleSubclients, first call (preloadStore=true)
    "TestProportionalShareWithMultipleSubclients/1": (
        120,
        {"c0": (65, 3, 60), "c1": (45, 2, 40), "c2": (20, 1, 20)},
    ),
}


@pytest.mark.parametrize("name", list(DOORMAN_PROPORTIONAL_SHARE))
def test_doorman_proportional_share_vectors(name: str) -> None:
    # youtube/doorman go/server/doorman/algorithm_test.go, ProportionalShare (see above).
    capacity, clients = DOORMAN_PROPORTIONAL_SHARE[name]
    total_subclients = sum(sub for _, sub, _ in clients.values())
    demands = {c: float(wants) for c, (wants, _, _) in clients.items()}
    guarantees = {c: capacity * sub / total_subclients for c, (_, sub, _) in clients.items()}
    weights = {c: max(demands[c] - guarantees[c], 0.0) for c in clients}
    limits = fair_share(capacity, demands, guarantees, weights, headroom=False)
    served = {c: min(demands[c], limits[c]) for c in clients}
    expected = {c: float(get) for c, (_, _, get) in clients.items()}
    assert served == pytest.approx(expected)


# --------------------------------------------------------------------------------------
# Kubernetes API Priority and Fairness: computeConcurrencyAllocation in
# kubernetes/kubernetes staging/src/k8s.io/apiserver/pkg/util/flowcontrol/conc_alloc.go,
# tested by TestConcAlloc in .../flowcontrol/conc_alloc_test.go.
#
# TestConcAlloc has no literal vectors: it draws 10,000 random problems from Go's
# math/rand (seed 1234567890) and checks each answer against an oracle. We transcribe
# the oracle, not the numbers, as a property below. The mapping holds only for lower
# bounds of 0: requiredSum -> budget, upperBound -> demand, target -> weight, no
# guarantees, headroom=False; the oracle then says the allocations add up to
# requiredSum and each is fairProp·target, or its upper bound when that is smaller.
# Lower bounds > 0 do not map onto guarantees: Kubernetes allocates
# max(lowerBound, fairProp·target) (the bound absorbs the proportional share) where we
# allocate a_u + min(e_u, λ·w_u) (the share comes on top of the guarantee). The later
# version with per-class weights (proportionForDelta, different below and above the
# target) has no counterpart here either.
# --------------------------------------------------------------------------------------


@given(
    classes=st.lists(
        st.tuples(
            st.floats(0.001, 100.0),  # target (Kubernetes treats smaller ones as 0.001)
            st.floats(0.0, 1000.0),  # upperBound
        ),
        min_size=1,
        max_size=9,
    ),
    fraction=st.floats(0.0, 1.0),
)
def test_kubernetes_conc_alloc_oracle_with_zero_lower_bounds(
    classes: list[tuple[float, float]], fraction: float
) -> None:
    # Oracle of TestConcAlloc (kubernetes/kubernetes
    # staging/src/k8s.io/apiserver/pkg/util/flowcontrol/conc_alloc_test.go) for lower
    # bounds of 0; requiredSum is drawn within [0, Σ upperBound] as the test's
    # non-erroring cases are.
    demands = {f"pl{i}": ub for i, (_, ub) in enumerate(classes)}
    weights = {f"pl{i}": target for i, (target, _) in enumerate(classes)}
    required = math.fsum(demands.values()) * fraction
    allocs = fair_share(required, demands, {}, weights, headroom=False)
    assert math.fsum(allocs.values()) == pytest.approx(required, rel=1e-9, abs=1e-9)
    below = {u: allocs[u] / weights[u] for u in allocs if allocs[u] < demands[u]}
    if below:
        fair_prop = max(below.values())
        for u, alloc in allocs.items():
            if fair_prop * weights[u] >= demands[u]:
                assert alloc == pytest.approx(demands[u], rel=1e-9, abs=1e-9)
            else:
                assert alloc == pytest.approx(fair_prop * weights[u], rel=1e-9, abs=1e-9)


# --------------------------------------------------------------------------------------
# Hand-computed examples (worked out by hand for this project; not published vectors).
# --------------------------------------------------------------------------------------


def test_hand_guarantees_then_spare_by_allocation() -> None:
    # Hand-computed. B=100; a = 20, 10, 30; d = 50, 50, 10.
    # g = 20 + 10 + 10 = 40, S = 60; claimants x (e=30, w=20), y (e=40, w=10).
    # λ: 20λ + 10λ = 60 -> λ = 2 -> x would get 40 > 30, so x is capped at 30 and
    # y gets the remaining 30 (< 40). s = 50, 40, 30 (z keeps its whole guarantee).
    got = fair_share(100, {"x": 50, "y": 50, "z": 10}, {"x": 20, "y": 10, "z": 30})
    assert got == {"x": 50.0, "y": 40.0, "z": 30.0}


def test_hand_weights_override_allocation() -> None:
    # Hand-computed. B=90, a = 10 each, d = 100 each, weights 1 and 2.
    # S = 70 shared 1:2 -> 70/3 and 140/3 on top of the guarantees.
    got = fair_share(90, {"x": 100, "y": 100}, {"x": 10, "y": 10}, {"x": 1, "y": 2})
    assert got == pytest.approx({"x": 10 + 70 / 3, "y": 10 + 140 / 3})


def test_hand_headroom() -> None:
    # Hand-computed. B=100; d = 10, 20; a = 30, 5. Σd = 30 < B, so L = 70 is handed out
    # by weight (default: the allocations 30 and 5): 60 and 10.
    # s_x = max(30, 10 + 60) = 70, s_y = max(5, 20 + 10) = 30.
    got = fair_share(100, {"x": 10, "y": 20}, {"x": 30, "y": 5})
    assert got == pytest.approx({"x": 70.0, "y": 30.0})
    # Without headroom: x keeps its guarantee, y is served its demand.
    assert fair_share(100, {"x": 10, "y": 20}, {"x": 30, "y": 5}, headroom=False) == {
        "x": 30.0,
        "y": 20.0,
    }


def test_hand_headroom_equal_when_all_weights_zero() -> None:
    # Hand-computed. No guarantees, so all default weights are 0: L = 100 - 30 = 70
    # is split equally, 35 each.
    assert fair_share(100, {"x": 10, "y": 20}, {}) == {"x": 45.0, "y": 55.0}


def test_hand_zero_weight_served_after_positive_weights() -> None:
    # Hand-computed. B=100; x has allocation 20, y and z have none (weight 0).
    # g = 20, S = 80: x's excess 30 is served first (s_x = 50), then y and z share the
    # remaining 50 max-min: y wants 10 (fully served), z gets the other 40.
    got = fair_share(100, {"x": 50, "y": 10, "z": 100}, {"x": 20}, headroom=False)
    assert got == {"x": 50.0, "y": 10.0, "z": 40.0}
    # With less budget the zero-weight Users get nothing until x is satisfied.
    got = fair_share(40, {"x": 50, "y": 10, "z": 100}, {"x": 20}, headroom=False)
    assert got == {"x": 40.0, "y": 0.0, "z": 0.0}


def test_hand_over_subscribed_guarantees_returned_as_is() -> None:
    # Hand-computed. Guarantees add up to 200 > B = 100; both Users ask for more.
    # S = 100 - 200 < 0: no spare, limits are the guarantees.
    got = fair_share(100, {"x": 150, "y": 150}, {"x": 100, "y": 100})
    assert got == {"x": 100.0, "y": 100.0}


def test_hand_over_subscribed_but_unused_guarantee_is_spare() -> None:
    # Hand-computed. Guarantees add up to 200 > B = 150, but x uses none of its own:
    # g = 0 + 100, S = 50, so y (the only claimant) is served 150.
    got = fair_share(150, {"y": 150}, {"x": 100, "y": 100}, headroom=False)
    assert got == {"y": 150.0, "x": 100.0}


def test_empty_and_users_from_either_mapping() -> None:
    assert fair_share(10, {}, {}) == {}
    got = fair_share(10, {"only_demand": 4}, {"only_guarantee": 3}, headroom=False)
    assert got == {"only_demand": 4.0, "only_guarantee": 3.0}
    assert all(type(v) is float for v in got.values())


def test_zero_budget() -> None:
    assert fair_share(0, {"x": 5, "y": 5}, {"x": 1}) == {"x": 1.0, "y": 0.0}


def test_water_level_hand_examples() -> None:
    # Hand-computed. Spare 30 by weights 1:2 over excesses 5 and 100: level 10 would give
    # x 10 > 5, so x gets 5 and y the other 25.
    assert water_level({"x": 5, "y": 100}, {"x": 1, "y": 2}, 30) == {"x": 5.0, "y": 25.0}
    assert water_level({"x": 5, "y": 100}, {"x": 1, "y": 2}, 0) == {"x": 0.0, "y": 0.0}
    assert water_level({"x": 5, "y": 100}, {"x": 1, "y": 2}, -3) == {"x": 0.0, "y": 0.0}
    assert water_level({"x": 5, "y": 7}, {"x": 1}, 1000) == {"x": 5.0, "y": 7.0}
    # y has no weight: it waits for x, then takes what is left.
    assert water_level({"x": 5, "y": 7}, {"x": 1}, 9) == {"x": 5.0, "y": 4.0}
    assert water_level({"x": 5, "y": 7}, {}, 6) == {"x": 3.0, "y": 3.0}


def test_many_users() -> None:
    n = 100_000
    demands = {f"u{i}": float(i % 97) for i in range(n)}
    guarantees = {f"u{i}": float(i % 13) for i in range(n)}
    limits = fair_share(2_000_000.0, demands, guarantees, headroom=False)
    assert len(limits) == n
    served = math.fsum(min(demands[u], s) for u, s in limits.items())
    assert served == pytest.approx(2_000_000.0)


# --------------------------------------------------------------------------------------
# Properties.
# --------------------------------------------------------------------------------------

USERS = st.sampled_from([f"u{i}" for i in range(6)])
AMOUNTS = st.one_of(
    st.integers(0, 100).map(float), st.floats(0.0, 1000.0, allow_nan=False, allow_infinity=False)
)
WEIGHTS = st.one_of(st.just(0.0), st.integers(1, 10).map(float), st.floats(0.01, 100.0))
BUDGETS = st.one_of(st.integers(0, 2000).map(float), st.floats(0.0, 5000.0))

problems = st.fixed_dictionaries(
    {
        "budget": BUDGETS,
        "demands": st.dictionaries(USERS, AMOUNTS, max_size=6),
        "guarantees": st.dictionaries(USERS, AMOUNTS, max_size=6),
        "weights": st.none() | st.dictionaries(USERS, WEIGHTS, max_size=6),
    }
)

Problem = dict[str, object]


def _unpack(
    p: Problem,
) -> tuple[float, dict[str, float], dict[str, float], dict[str, float] | None]:
    budget = p["budget"]
    demands = p["demands"]
    guarantees = p["guarantees"]
    weights = p["weights"]
    assert isinstance(budget, float)
    assert isinstance(demands, dict)
    assert isinstance(guarantees, dict)
    assert weights is None or isinstance(weights, dict)
    return budget, demands, guarantees, weights


def _tol(budget: float, demands: dict[str, float], guarantees: dict[str, float]) -> float:
    return 1e-9 * max(1.0, budget, math.fsum(demands.values()), math.fsum(guarantees.values()))


def _effective(
    demands: dict[str, float], guarantees: dict[str, float], weights: dict[str, float] | None
) -> tuple[list[str], dict[str, float], dict[str, float], dict[str, float]]:
    users = list(dict.fromkeys([*demands, *guarantees]))
    d = {u: demands.get(u, 0.0) for u in users}
    a = {u: guarantees.get(u, 0.0) for u in users}
    w = dict(a) if weights is None else {u: weights.get(u, 0.0) for u in users}
    return users, d, a, w


@given(p=problems, headroom=st.booleans())
def test_every_user_keeps_its_guarantee(p: Problem, headroom: bool) -> None:
    budget, demands, guarantees, weights = _unpack(p)
    limits = fair_share(budget, demands, guarantees, weights, headroom=headroom)
    users, d, a, _ = _effective(demands, guarantees, weights)
    assert list(limits) == users
    for u in users:
        assert limits[u] >= a[u]
        assert min(d[u], limits[u]) >= min(d[u], a[u])


@given(p=problems)
def test_without_headroom_nobody_gets_more_than_it_needs(p: Problem) -> None:
    budget, demands, guarantees, weights = _unpack(p)
    limits = fair_share(budget, demands, guarantees, weights, headroom=False)
    _, d, a, _ = _effective(demands, guarantees, weights)
    for u, s in limits.items():
        assert s <= max(d[u], a[u])
        if d[u] <= a[u]:
            assert s == a[u]


@given(p=problems, headroom=st.booleans())
def test_work_conserving_and_within_budget(p: Problem, headroom: bool) -> None:
    budget, demands, guarantees, weights = _unpack(p)
    limits = fair_share(budget, demands, guarantees, weights, headroom=headroom)
    users, d, a, _ = _effective(demands, guarantees, weights)
    tol = _tol(budget, demands, guarantees)
    served = math.fsum(min(d[u], limits[u]) for u in users)
    assert served <= max(budget, math.fsum(a.values())) + tol
    if served < budget - tol:
        for u in users:
            assert min(d[u], limits[u]) == pytest.approx(d[u], abs=tol)
    # Exactly: the guaranteed part plus as much of the excess as the spare covers.
    guaranteed = math.fsum(min(d[u], a[u]) for u in users)
    expected = min(max(budget, guaranteed), math.fsum(d.values()))
    assert served == pytest.approx(expected, abs=tol)


@given(p=problems)
def test_headroom_covers_the_budget(p: Problem) -> None:
    budget, demands, guarantees, weights = _unpack(p)
    limits = fair_share(budget, demands, guarantees, weights)
    users, d, _, _ = _effective(demands, guarantees, weights)
    assume(users and math.fsum(d.values()) < budget)
    for u in users:
        assert limits[u] >= d[u]
    assert math.fsum(limits.values()) >= budget - _tol(budget, demands, guarantees)


@given(p=problems, headroom=st.booleans())
def test_weighted_max_min_fairness(p: Problem, headroom: bool) -> None:
    budget, demands, guarantees, weights = _unpack(p)
    limits = fair_share(budget, demands, guarantees, weights, headroom=headroom)
    users, d, a, w = _effective(demands, guarantees, weights)
    tol = _tol(budget, demands, guarantees)
    claimants = [u for u in users if d[u] > a[u]]
    extra = {u: limits[u] - a[u] for u in claimants}
    short = [u for u in claimants if limits[u] < d[u] - tol]
    short_weighted = [u for u in short if w[u] > 0]
    short_unweighted = [u for u in short if w[u] == 0]
    # Two claimants both short of their demand get extras in proportion to their weights.
    for i in short_weighted:
        for j in short_weighted:
            assert extra[i] * w[j] == pytest.approx(
                extra[j] * w[i], rel=1e-9, abs=tol * max(w[i], w[j])
            )
    # Zero-weight claimants get nothing while a weighted one is short, else equal extras.
    if short_weighted:
        for u in claimants:
            if w[u] == 0:
                assert extra[u] == 0
    for i in short_unweighted:
        for j in short_unweighted:
            assert extra[i] == pytest.approx(extra[j], rel=1e-9, abs=tol)
    # Max-min: a satisfied weighted claimant never needed a higher level than the short.
    # (The level is read off the heaviest short claimant, where rounding matters least.)
    if short_weighted:
        heaviest = max(short_weighted, key=lambda u: w[u])
        level = extra[heaviest] / w[heaviest]
        for u in claimants:
            if w[u] > 0 and u not in short:
                slack = tol * max(1.0, w[u] / w[heaviest])
                assert d[u] - a[u] <= level * w[u] + slack


@given(p=problems, more=st.floats(0.0, 5000.0), headroom=st.booleans())
def test_monotonic_in_budget(p: Problem, more: float, headroom: bool) -> None:
    budget, demands, guarantees, weights = _unpack(p)
    low = fair_share(budget, demands, guarantees, weights, headroom=headroom)
    high = fair_share(budget + more, demands, guarantees, weights, headroom=headroom)
    _, d, _, _ = _effective(demands, guarantees, weights)
    tol = _tol(budget + more, demands, guarantees)
    for u in low:
        assert min(d[u], high[u]) >= min(d[u], low[u]) - tol
        assert high[u] >= low[u] - tol


@given(p=problems, headroom=st.booleans())
def test_pure(p: Problem, headroom: bool) -> None:
    budget, demands, guarantees, weights = _unpack(p)
    before = deepcopy((demands, guarantees, weights))
    first = fair_share(budget, demands, guarantees, weights, headroom=headroom)
    assert (demands, guarantees, weights) == before
    first_copy = dict(first)
    first.clear()  # the result is a new dict: changing it changes nothing else
    second = fair_share(budget, demands, guarantees, weights, headroom=headroom)
    assert second == first_copy
    assert (demands, guarantees, weights) == before


@given(
    excess=st.dictionaries(USERS, AMOUNTS, max_size=6),
    weights=st.dictionaries(USERS, WEIGHTS, max_size=6),
    spare=BUDGETS,
)
def test_water_level_fills_up_to_the_spare(
    excess: dict[str, float], weights: dict[str, float], spare: float
) -> None:
    extra = water_level(excess, weights, spare)
    assert list(extra) == list(excess)
    for u, x in extra.items():
        assert 0 <= x <= excess[u]
    total = math.fsum(excess.values())
    assert math.fsum(extra.values()) == pytest.approx(
        min(spare, total), abs=1e-9 * max(1.0, spare, total)
    )


# --------------------------------------------------------------------------------------
# Errors: every bad value is refused with the User named.
# --------------------------------------------------------------------------------------

BAD = [-1.0, -1e-300, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("where", ["demands", "guarantees", "weights"])
def test_bad_input_names_the_user(where: str, bad: float) -> None:
    args: dict[str, dict[str, float]] = {
        "demands": {"alice": 1.0, "bob": 2.0},
        "guarantees": {"alice": 1.0, "bob": 1.0},
        "weights": {"alice": 1.0, "bob": 1.0},
    }
    args[where]["bob"] = bad
    with pytest.raises(ValueError, match=r"'bob'") as info:
        fair_share(10.0, args["demands"], args["guarantees"], args["weights"])
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", BAD)
def test_bad_budget(bad: float) -> None:
    with pytest.raises(ValueError, match="budget"):
        fair_share(bad, {"alice": 1.0}, {"alice": 1.0})


@pytest.mark.parametrize("bad", BAD)
def test_water_level_bad_input(bad: float) -> None:
    with pytest.raises(ValueError, match=r"excess of user 'bob'"):
        water_level({"bob": bad}, {"bob": 1.0}, 1.0)
    with pytest.raises(ValueError, match=r"weight of user 'bob'"):
        water_level({"bob": 1.0}, {"bob": bad}, 1.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_water_level_bad_spare(bad: float) -> None:
    with pytest.raises(ValueError, match="spare"):
        water_level({"bob": 1.0}, {"bob": 1.0}, bad)


# --------------------------------------------------------------------------------------
# Sharing: the cached path the governor takes every control period.
# --------------------------------------------------------------------------------------


def _share_from_scratch(
    budget: float,
    users: list[str],
    demands: dict[str, float],
    guarantees: dict[str, float],
    weights: dict[str, float],
    headroom: bool,
) -> dict[str, float]:
    """The water-filling as it was before Sharing: every figure computed afresh, in
    Python, one User at a time (the oracle the cached path must equal to the last bit)."""
    limits: dict[str, float] = {}
    excess: dict[str, float] = {}
    held: list[float] = []
    for u in users:
        d, f = demands.get(u, 0.0), guarantees.get(u, 0.0)
        limits[u] = f
        if d > f:
            excess[u] = d - f
            held.append(f)
        else:
            held.append(d)
    spare = budget - math.fsum(held)
    if spare > 0 and excess:
        extra = _fill(excess, weights, spare)
        for u, e in excess.items():
            d, f = demands[u], guarantees.get(u, 0.0)
            limits[u] = d if extra[u] >= e else min(d, f + extra[u])
    if headroom and limits:
        leftover = budget - math.fsum(demands.get(u, 0.0) for u in limits)
        if leftover > 0:
            top = max(weights.get(u, 0.0) for u in limits)
            scaled = [weights.get(u, 0.0) / top if top > 0 else 1.0 for u in limits]
            total_weight = math.fsum(scaled)
            for u, w in zip(list(limits), scaled, strict=True):
                share = leftover * (w / total_weight)
                limits[u] = max(guarantees.get(u, 0.0), demands.get(u, 0.0) + share)
    return limits


@given(
    guarantees=st.dictionaries(USERS, AMOUNTS, min_size=1, max_size=6),
    weights=st.none() | st.dictionaries(USERS, WEIGHTS, max_size=6),
    rounds=st.lists(
        st.tuples(BUDGETS, st.dictionaries(USERS, AMOUNTS, max_size=6), st.booleans()),
        min_size=1,
        max_size=8,
    ),
)
def test_a_sharing_reused_equals_every_figure_computed_afresh(
    guarantees: dict[str, float],
    weights: dict[str, float] | None,
    rounds: list[tuple[float, dict[str, float], bool]],
) -> None:
    # One Sharing, built once, over rounds of new budgets and demands (Users absent from
    # a round's demands count 0; demands of Users it does not share among are ignored).
    users = list(guarantees)
    w = dict(guarantees) if weights is None else weights
    sharing = Sharing(users, guarantees, w)
    for budget, demands, headroom in rounds:
        expected = _share_from_scratch(budget, users, demands, guarantees, w, headroom)
        got = sharing(budget, demands, headroom=headroom)
        assert got == expected  # exactly: not approximately
        assert list(got) == users
        assert share_valid(budget, users, demands, guarantees, w, headroom=headroom) == expected
