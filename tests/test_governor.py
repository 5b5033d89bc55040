"""The governor: smoothing fast up and slow down, hysteresis, limits from fair share."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import srtm.governor as governor_module
from srtm import Gate, TrafficPolicy
from srtm.fairshare import fair_share
from srtm.governor import COLLECTIVE, Governor, _whole_requests, equal_level


def policy(**kwargs: object) -> TrafficPolicy:
    base: dict[str, object] = {
        "capacity": 100,
        "threshold": 0.8,
        "allocations": {"a": 40, "b": 30, "c": 10},
    }
    return TrafficPolicy(**(base | kwargs))  # type: ignore[arg-type]


def test_inactive_below_threshold_means_no_limits() -> None:
    gov = Governor(policy())
    for _ in range(10):
        state = gov.update({"a": 35, "b": 30, "c": 10}, 1.0)
    assert not state.active
    assert gov.limit("a") is None
    assert gov.limit("c") is None


def test_engages_at_threshold_and_shares_by_fair_share() -> None:
    gov = Governor(policy(engage_after=2))
    assert not gov.update({"a": 35, "b": 30, "c": 1000}, 1.0).active  # held one period
    state = gov.update({"a": 35, "b": 30, "c": 1000}, 1.0)
    assert state.active
    # a and b are within their allocations and keep them in full; c gets its own 10
    # plus everything a and b leave unused of the budget: 80 - 35 - 30 = 15.
    assert gov.limit("a") == pytest.approx(40)
    assert gov.limit("b") == pytest.approx(30)
    assert gov.limit("c") == pytest.approx(15)


def test_demand_rises_at_once_and_falls_slowly_never_below_latest() -> None:
    gov = Governor(policy(smoothing=0.5))
    gov.update({"c": 1000}, 1.0, elapsed=1.0)
    assert gov.demand["c"] == 1000
    gov.update({"c": 0}, 1.0, elapsed=1.0)
    assert gov.demand["c"] == pytest.approx(500)
    gov.update({"c": 600}, 1.0, elapsed=1.0)
    assert gov.demand["c"] == 600  # up again at once
    gov.update({"c": 400}, 1.0, elapsed=1.0)
    assert gov.demand["c"] == pytest.approx(500)
    gov.update({"c": 480}, 1.0, elapsed=1.0)
    assert gov.demand["c"] == pytest.approx(490)  # above the latest figure
    gov.update({"c": 489}, 1.0, elapsed=1.0)
    assert gov.demand["c"] >= 489


def test_smoothing_is_per_second_whatever_the_control_period() -> None:
    once = Governor(policy(smoothing=0.75))
    often = Governor(policy(smoothing=0.75))
    once.update({"c": 1000}, 1.0, elapsed=1.0)
    often.update({"c": 1000}, 1.0, elapsed=1.0)
    once.update({"c": 0}, 1.0, elapsed=1.0)
    for _ in range(4):
        often.update({"c": 0}, 1.0, elapsed=0.25)
    assert once.demand["c"] == pytest.approx(250)
    assert often.demand["c"] == pytest.approx(once.demand["c"])


def test_hysteresis_no_flapping_under_constant_demand() -> None:
    gov = Governor(policy(release_after=3, release_ratio=0.9))
    history = [gov.update({"a": 40, "b": 30, "c": 12}, 1.0).active for _ in range(30)]
    # 82 SR/s is above the budget of 80: on, and it stays on.
    assert history[0]
    assert all(history)
    # Just below the budget but above the release level (72): still on.
    history = [gov.update({"a": 40, "b": 30, "c": 5}, 1.0).active for _ in range(30)]
    assert all(history)
    # Clearly below: released, but only after the release level held for 3 periods
    # (demand first decays from 75 to under 72).
    history = [gov.update({"a": 20, "b": 10, "c": 5}, 1.0).active for _ in range(30)]
    first_off = history.index(False)
    assert 2 <= first_off <= 8
    assert not any(history[first_off:])


def test_a_guarantee_is_restored_at_once() -> None:
    gov = Governor(policy())
    for _ in range(5):
        gov.update({"a": 0, "b": 0, "c": 2000}, 1.0)
    assert gov.active
    # a was idle; its limit is still its full allocation, not its smoothed demand of 0.
    assert gov.limit("a") == pytest.approx(40)
    # A User never seen before gets its guarantee (default allocation, floor) at once.
    assert gov.limit("stranger") == 0.0


def test_capacity_can_change_at_run_time() -> None:
    gov = Governor(policy())
    for _ in range(3):
        gov.update({"a": 30, "b": 30, "c": 100}, 1.0)
    before = gov.limit("c")  # 10 of its own and the 10 that a leaves unused
    gov.set_capacity(50)
    assert gov.budget == pytest.approx(40)
    # Over-subscribed now: guarantees stand as they are, nobody gets spare.
    assert gov.limit("c") == pytest.approx(10)
    assert before is not None
    assert before > 10
    with pytest.raises(ValueError, match="capacity"):
        gov.set_capacity(-1)


def test_forgets_idle_unknown_users_but_keeps_allocated_ones() -> None:
    gov = Governor(policy(smoothing=1.0))
    gov.update({"drive-by": 5, "a": 5}, 1.0)
    assert "drive-by" in gov.demand
    gov.update({}, 1.0)
    assert "drive-by" not in gov.demand
    assert "a" in gov.demand


# --------------------------------------------------------------------------------------
# The collective of unnamed Users: hierarchical water-filling.
# --------------------------------------------------------------------------------------


def test_doorman_fair_share_vector_with_the_collective_as_one_client() -> None:
    # youtube/doorman go/server/doorman/algorithm_test.go, TestFairShare: capacity 120,
    # wants 1000, 60, 10 -> 55, 55, 10 (equal weights, no guarantees). Here the client
    # wanting 1000 is the collective of three unnamed Users (600 + 300 + 100): it gets
    # 55 as one client, split max-min among its members: 18.33 each, handed out in
    # whole requests per window (55 = 19 + 18 + 18).
    gov = Governor(
        TrafficPolicy(capacity=150, threshold=0.8, allocations={"c1": 0, "c2": 0}, window=1.0)
    )
    state = gov.update({"c1": 60, "c2": 10, "m1": 600, "m2": 300, "m3": 100}, 1.0)
    assert state.active
    assert state.collective_demand == 1000
    assert state.collective_limit == pytest.approx(55)
    assert gov.limit("c1") == pytest.approx(55)
    assert gov.limit("c2") == pytest.approx(10)
    members = sorted(gov.limit(m) or 0.0 for m in ("m1", "m2", "m3"))
    assert members == [18.0, 18.0, 19.0]
    assert gov.guarantee("m1") == 0.0  # the collective holds no guarantee here


def test_weighted_hierarchical_share_by_hand() -> None:
    # Budget 100; a (allocation 40) wants 100, b (20) wants 10; the collective (default
    # 20, weighted 20) wants 60 from two members of 30 each. Guarantees 40 + 10 + 20
    # leave 30 of spare for a and the collective in proportion 40:20: a 60, the
    # collective 30, split 15 and 15; each member is guaranteed half of the 20.
    gov = Governor(
        TrafficPolicy(
            capacity=125, threshold=0.8, allocations={"a": 40, "b": 20}, default_allocation=20
        )
    )
    gov.update({"a": 100, "b": 10, "x": 30, "y": 30}, 1.0)
    assert gov.active
    assert gov.limit("a") == pytest.approx(60)
    assert gov.limit("b") == pytest.approx(20)
    assert gov.collective_limit == pytest.approx(30)
    assert gov.limit("x") == pytest.approx(15)
    assert gov.limit("y") == pytest.approx(15)
    assert gov.guarantee("x") == pytest.approx(10)
    assert gov.guarantee("y") == pytest.approx(10)
    assert gov.reserved == pytest.approx(40 + 10 + 20)


def test_a_new_identity_holds_nothing_and_waits_behind_the_named_reservation() -> None:
    gov = Governor(
        TrafficPolicy(capacity=100, threshold=0.8, allocations={"a": 30}, default_allocation=10)
    )
    gov.update({"a": 25, "x": 5}, 1.0)
    assert not gov.active
    assert gov.member("newcomer")
    assert not gov.member("a")
    assert gov.guarantee("newcomer") == 0.0
    # A seen member keeps the budget; a new one may only use what the named Users'
    # in-allocation demand (25) leaves of it.
    assert gov.budget_for("x") == pytest.approx(80)
    assert gov.budget_for("newcomer") == pytest.approx(55)
    assert gov.budget_for("a") == pytest.approx(80)
    # The collective counts as one User for the admission limit while TM is off.
    assert gov.admission_limit("newcomer") == pytest.approx(80 - 25)


def test_per_identity_gives_each_unnamed_user_its_own_default() -> None:
    gov = Governor(
        TrafficPolicy(
            capacity=100,
            allocations={"a": 30, "idle-1": 0, "idle-2": 0},  # more named than strangers
            default_allocation=5,
            unknown_users="per_identity",
        )
    )
    gov.update({"a": 30, "x": 50, "y": 50}, 1.0)
    assert gov.active
    assert not gov.member("x")
    assert gov.guarantee("x") == 5
    assert gov.guarantee("never-seen") == 5
    assert gov.limit("x") == pytest.approx(25)  # 5 + half of the 40 spare
    assert gov.collective_limit is None


def test_an_update_that_changes_nothing_recomputes_nothing() -> None:
    gov = Governor(policy())
    gov.update({"a": 35, "b": 30, "c": 100}, 1.0)
    epoch, limits = gov.epoch, gov.limits
    gov.update({"a": 35, "b": 30, "c": 100}, 1.0)
    assert gov.epoch == epoch  # the gate's quota cache stays valid
    assert gov.limits is limits
    gov.update({"a": 35, "b": 30, "c": 101}, 1.0)
    assert gov.epoch == epoch + 1


members_offered = st.dictionaries(
    st.from_regex(r"m[0-9]{1,4}", fullmatch=True),
    st.floats(min_value=0, max_value=500, allow_nan=False),
    max_size=300,
)


@settings(max_examples=150, deadline=None)
@given(
    members=members_offered,
    named=st.lists(st.floats(min_value=0, max_value=500), min_size=0, max_size=4),
    default=st.floats(min_value=1, max_value=100),
    capacity=st.floats(min_value=10, max_value=2000),
    rounds=st.integers(min_value=1, max_value=3),
)
def test_the_collective_never_holds_more_than_its_allocation(
    members: dict[str, float], named: list[float], default: float, capacity: float, rounds: int
) -> None:
    allocations = {f"n{i}": 10.0 for i in range(len(named))}
    p = TrafficPolicy(capacity=capacity, allocations=allocations, default_allocation=default)
    gov = Governor(p)
    offered = dict(members) | {f"n{i}": d for i, d in enumerate(named)}
    for _ in range(rounds):
        gov.update(offered, 1.0)
    held = [gov.guarantee(m) for m in gov.demand if gov.member(m)]
    assert math.fsum(held) <= default + 1e-9
    # In whole requests per window, as the gate counts them, too.
    gate = Gate(p, background=False)
    pool = gate.pool("default")
    pool.governor = gov
    counted = sum(gate.quota(pool, m).guarantee for m in gov.demand if gov.member(m))
    assert counted <= math.floor(default * p.window + 1e-9)
    if gov.active:
        assert gov.collective_limit is not None
        limits = [gov.limit(m) or 0.0 for m in gov.demand if gov.member(m)]
        assert math.fsum(limits) <= gov.collective_limit + 1e-6
        assert gov.collective_limit >= min(gov.collective_demand, default) - 1e-6


# --------------------------------------------------------------------------------------
# Recomputation proportional to change: the incremental, cached path against figures
# computed from scratch after every step.
# --------------------------------------------------------------------------------------


def _from_scratch(gov: Governor, salt: int) -> dict[str, object]:
    """Every figure a recomputation derives, from the governor's demand, capacity and
    state alone: the policy asked afresh for each User's guarantee and weight, the
    checked fair_share, nothing carried over from an earlier step. ``salt`` is the
    update count at the last recomputation (the members' rounding breaks ties by it)."""
    p = gov.policy
    shared = p.unknown_users != "per_identity"
    own: dict[str, float] = {}
    members: dict[str, float] = {}
    reserved_named = 0.0
    for user, d in gov.demand.items():
        if shared and user not in p.allocations:
            members[user] = d
            continue
        own[user] = d
        reserved_named += min(d, p.guarantee(user))
    cg = p.collective_guarantee
    reserved = reserved_named + (min(gov.collective_demand, cg) if shared else 0.0)
    level = equal_level(cg, list(members.values())) if shared and members and cg > 0 else 0.0
    figures: dict[str, object] = {
        "reserved": reserved,
        "reserved_named": reserved_named,
        "member_guarantees": {u: min(d, level) for u, d in members.items()},
        "limits": None,
        "collective_limit": None,
    }
    if gov.active:
        strangers = [u for u in own if u not in p.allocations]
        entities = [*p.allocations, *([COLLECTIVE] if shared else strangers)]
        g = {u: cg if u == COLLECTIVE else p.guarantee(u) for u in entities}
        w = {u: cg if u == COLLECTIVE else p.weight(u) for u in entities}
        d = {u: gov.collective_demand if u == COLLECTIVE else own.get(u, 0.0) for u in entities}
        limits = fair_share(p.threshold * gov.capacity, d, g, w)
        if shared:
            share = limits.pop(COLLECTIVE)
            figures["collective_limit"] = share
            if members:
                wanted = math.fsum(members.values())
                if share >= wanted:
                    split = {u: x + (share - wanted) / len(members) for u, x in members.items()}
                else:
                    top = equal_level(share, list(members.values()))
                    split = {u: min(x, top) for u, x in members.items()}
                limits.update(_whole_requests(split, p.window, salt))
        figures["limits"] = limits
    return figures


def _incremental(gov: Governor) -> dict[str, object]:
    return {
        "reserved": gov.reserved,
        "reserved_named": gov._reserved_named,
        "member_guarantees": {u: gov.guarantee(u) for u in gov.demand if gov.member(u)},
        "limits": None if gov.limits is None else dict(gov.limits),
        "collective_limit": gov.collective_limit,
    }


NAMED = ["a", "b", "c"]
UNNAMED = ["m1", "m2", "m3", "m4", "m5"]  # the collective's members, or strangers

step = st.one_of(
    # offered counts of a window: named Users and unnamed ones arriving and leaving
    st.tuples(
        st.just("update"),
        st.dictionaries(
            st.sampled_from(NAMED + UNNAMED),
            st.one_of(st.integers(0, 200).map(float), st.floats(0, 300)),
            max_size=8,
        ),
        st.sampled_from([0.25, 0.5, 1.0, 2.0]),
    ),
    st.tuples(st.just("capacity"), st.floats(0, 400), st.just(1.0)),
    st.tuples(st.just("hold"), st.floats(0, 5), st.just(1.0)),
)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(step, min_size=1, max_size=25),
    allocations=st.lists(st.floats(0, 60), min_size=3, max_size=3),
    weights=st.none() | st.dictionaries(st.sampled_from(NAMED + UNNAMED), st.floats(0, 50)),
    default=st.sampled_from([0.0, 1.0, 5.0, 20.0]),
    floor=st.sampled_from([0.0, 2.0]),
    mode=st.sampled_from(["collective", "per_identity"]),
    most=st.sampled_from([2, 10_000]),
)
def test_incremental_recomputation_equals_from_scratch(
    steps: list[tuple[str, object, float]],
    allocations: list[float],
    weights: dict[str, float] | None,
    default: float,
    floor: float,
    mode: str,
    most: int,
) -> None:
    p = TrafficPolicy(
        capacity=100,
        allocations=dict(zip(NAMED, allocations, strict=True)),
        default_allocation=default,
        floor=floor,
        weights=weights,
        unknown_users=mode,  # type: ignore[arg-type]
        smoothing=0.75,
        release_after=2,
    )
    gov = Governor(p)
    salt = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(governor_module, "MAX_MEMBERS", most)  # pruning, at a small size
        for kind, value, elapsed in steps:
            before = (gov.epoch, dict(gov.demand), gov.collective_demand, gov.active)
            if kind == "update":
                assert isinstance(value, dict)
                gov.update(value, 1.0, elapsed=elapsed)
                now = (dict(gov.demand), gov.collective_demand, gov.active)
                # Nothing changed: nothing recomputed (the gate's quotas stay valid).
                assert (gov.epoch == before[0]) == (now == before[1:])
            elif kind == "capacity":
                assert isinstance(value, float)
                gov.set_capacity(value)
            else:
                assert isinstance(value, float)
                gov.hold(value)
            if gov.epoch != before[0]:
                salt = gov._updates
            assert _incremental(gov) == _from_scratch(gov, salt)
            unseen = {"never-seen", *NAMED}
            assert gov.least_budget_for(unseen) == min(gov.budget_for(u) for u in unseen)
            seen = set(gov.demand) | {"a"}
            assert gov.least_budget_for(seen) == min(gov.budget_for(u) for u in seen)
