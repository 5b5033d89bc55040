"""The governor: smoothing fast up and slow down, hysteresis, limits from fair share."""

from __future__ import annotations

import pytest

from srtm import Governor, TrafficPolicy


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
