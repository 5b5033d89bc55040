"""Scenarios, curves and the ways a run refuses to start: each says exactly what is wrong."""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import TYPE_CHECKING

import numpy as np
import pytest

import srtm.sim
from srtm import PolicyError, TrafficPolicy
from srtm.sim import (
    DAY,
    SCENARIOS,
    CapacityChange,
    Client,
    OpenLoop,
    OutputError,
    Priority,
    Scenario,
    ScenarioError,
    Stream,
    UnknownScenario,
    User,
    at,
    burst,
    constant,
    daily,
    function,
    load_scenario,
    outage,
    piecewise,
    run_scenario,
    streams,
)
from srtm.sim._api import prepare_output
from srtm.sim._runner import compile_scenario

if TYPE_CHECKING:
    from pathlib import Path

POLICY = TrafficPolicy(capacity=100, threshold=0.8, allocations={"a": 40, "b": 30, "f": 5})


def small(**changes: object) -> Scenario:
    users = [
        User(id="a", demand=[Stream(constant(20.0), Priority.ROUTINE)]),
        User(
            id="b", demand=streams(constant(15.0), {Priority.PREPAYMENT: 0.2, Priority.BULK: 0.8})
        ),
        User(
            id="f",
            client=OpenLoop(),
            demand=[Stream(burst(start=20, duration=10, rate=400), Priority.BULK)],
        ),
    ]
    fields: dict[str, object] = {
        "name": "small",
        "policy": POLICY,
        "users": users,
        "duration": 60.0,
        "culprits": frozenset({"f"}),
        "incidents": outage(start=40, duration=5),
    }
    fields.update(changes)
    return Scenario(**fields)  # type: ignore[arg-type]


# -- curves -------------------------------------------------------------------------------


def test_clock_times() -> None:
    assert at("01:30") == 5400.0
    assert at("23:59:59") == 86_399.0
    for bad in ("1h", "01:60", "01:00:00:00", ""):
        with pytest.raises(ValueError, match=r"clock time|below 60"):
            at(bad)


def test_curves_add_scale_and_integrate() -> None:
    curve = daily(86_400.0) + burst(start=3600, duration=60, rate=10) * 2
    assert curve.total() == pytest.approx(86_400 + 1200)
    assert daily(1000.0, night_share=0.7).total(0, 6 * 3600) == pytest.approx(700)
    shifted = daily(1000.0, shift=600.0)
    assert shifted.total() == pytest.approx(1000)  # wraps at midnight, nothing lost
    line = piecewise([(0, 0), (10, 10)])
    assert line.rate(np.array([5.0, 20.0])).tolist() == [5.0, 10.0]
    assert (0.5 * constant(4)).rate(np.array([1.0])).tolist() == [2.0]
    assert function(lambda t: t * 0 + 3).total(0, 10) == pytest.approx(30)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_shared_rates_are_each_curves_own(name: str) -> None:
    # The arrivals evaluate every curve of a scenario through one memo per chunk of
    # times: the rates must be Curve.rate's to the last bit, the memo left untouched.
    from srtm.sim._curves import shared_rate

    compiled = compile_scenario(load_scenario(name), 1.0)
    extra = (daily(500.0, shift=60.0) * 0.5 + constant(2.0), function(lambda t: t * 0 + 1))
    curves = [k for per in compiled.curves for k in per if k is not None] + list(extra)
    t = (np.arange(3600, 7200, dtype=np.float64) + 0.5) * compiled.window
    memo: dict[int, np.ndarray] = {}
    first = [shared_rate(curve, t, memo) for curve in curves]
    copies = {key: rates.copy() for key, rates in memo.items()}
    again = [shared_rate(curve, t, memo) for curve in curves]
    for curve, a, b in zip(curves, first, again, strict=True):
        assert np.array_equal(a, curve.rate(t))
        assert np.array_equal(b, a)
    assert all(np.array_equal(memo[key], rates) for key, rates in copies.items())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: constant(-1), "finite and >= 0"),
        (lambda: burst(start=-1, duration=5, rate=1), "start"),
        (lambda: burst(start=0, duration=0, rate=1), "duration"),
        (lambda: piecewise([(5, 1), (1, 1)]), "time order"),
        (lambda: constant(1) * -2, ">= 0"),
        (lambda: function(lambda t: -t).total(1, 2), "negative"),
    ],
)
def test_bad_curves_say_why(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


# -- scenarios ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "two words"}, "name"),
        ({"users": []}, "users"),
        ({"duration": 0.5}, "duration"),
        ({"culprits": frozenset({"nobody"})}, "culprits"),
        ({"focus": (50.0, 10.0)}, "focus"),
        ({"incidents": [CapacityChange(61, 0)]}, "incidents"),
        ({"policy": {"capacity": 100}}, "policy"),
    ],
)
def test_bad_scenarios_say_which_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ScenarioError, match=f"^{field}:"):
        small(**changes)


def test_bad_users_and_streams() -> None:
    with pytest.raises(ScenarioError, match=r"User\.id"):
        User(id="has space", demand=[])
    with pytest.raises(ScenarioError, match="unique"):
        small(users=[User(id="a", demand=[]), User(id="a", demand=[])])
    with pytest.raises(ScenarioError, match="duis_version"):
        User(id="a", demand=[], duis_version="four")
    with pytest.raises(ScenarioError, match="mix"):
        streams(constant(1), {Priority.BULK: 0.5})
    with pytest.raises(ScenarioError, match=r"Stream\.rate"):
        Stream(3.0)  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match=r"CapacityChange\.capacity"):
        CapacityChange(1, -5)


def test_a_bad_policy_is_the_cores_policy_error() -> None:
    with pytest.raises(PolicyError, match="threshold"):
        dataclasses.replace(POLICY, threshold=1.5)


@pytest.mark.parametrize("scale", [0, -1, 11, math.nan])
def test_bad_scale(scale: float) -> None:
    with pytest.raises(ScenarioError, match="scale"):
        compile_scenario(small(), scale)


def test_control_period_must_divide_the_window() -> None:
    odd = small(policy=dataclasses.replace(POLICY, control_period=0.3))
    with pytest.raises(ScenarioError, match="control_period"):
        compile_scenario(odd, 1.0)
    two = compile_scenario(small(policy=dataclasses.replace(POLICY, control_period=0.5)), 1.0)
    assert (two.slices, two.tick_every) == (4, 2)
    one = compile_scenario(small(policy=dataclasses.replace(POLICY, control_period=1.0)), 1.0)
    assert (one.slices, one.tick_every) == (4, 4)


def test_a_small_scenario_end_to_end() -> None:
    r = run_scenario(small(), progress=False)
    assert r.compiled.windows == 60
    tm, fcfs = r.tm, r.fcfs
    # The outage: nothing admitted while capacity is 0, in either run.
    off = tm.capacity == 0
    assert off.sum() == 5
    assert tm.admitted[:, off].sum() == fcfs.admitted[:, off].sum() == 0
    # The flood is held: a and b (within allocation) lose nothing to it with traffic
    # management; without it, a loses.
    t = {u.id: u for u in r.tm_figures.users}
    f = {u.id: u for u in r.fcfs_figures.users}
    flood = slice(20, 31)
    assert (tm.admitted[:2, flood] == tm.offered[:2, flood]).all()
    assert f["a"].guarantee_share is not None
    assert f["a"].guarantee_share < 0.9
    assert t["f"].lost > 0
    assert r.tm_figures.over_capacity_windows == 0
    assert (tm.admitted.sum(axis=0) <= 100).all()
    assert r.tm_figures.drains  # the recovery was timed


def test_after_a_short_outage_users_within_allocation_keep_their_guarantee() -> None:
    # Traffic management stays on after an outage until the clients told to wait are
    # back (it used to release while they waited, and the first back took the budget).
    r = run_scenario(small(), progress=False)
    t = {u.id: u for u in r.tm_figures.users}
    assert t["a"].focus_guarantee_share == 1.0
    assert t["b"].focus_guarantee_share == 1.0


# -- finding scenarios, output folders ------------------------------------------------------


def test_unknown_scenario_lists_the_built_in_ones() -> None:
    with pytest.raises(UnknownScenario) as info:
        load_scenario("no-such-thing")
    assert info.value.choices == tuple(SCENARIOS)
    assert "dsp-outage" in str(info.value)


def test_scenarios_from_a_file_and_a_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (
        "from srtm.sim import dsp_outage\n"
        "import dataclasses\n"
        "def quick():\n"
        "    return dataclasses.replace(dsp_outage(), name='quick')\n"
        "ready = quick()\n"
        "not_a_scenario = 42\n"
    )
    (tmp_path / "mine.py").write_text(source)
    assert load_scenario(f"{tmp_path / 'mine.py'}:quick").name == "quick"
    assert load_scenario(f"{tmp_path / 'mine.py'}:ready").name == "quick"
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert load_scenario("mine:ready").name == "quick"
    for bad, says in [
        (f"{tmp_path / 'mine.py'}:missing", "has no 'missing'"),
        (f"{tmp_path / 'mine.py'}:not_a_scenario", "not a srtm.sim.Scenario"),
        (f"{tmp_path / 'nope.py'}:x", "no such file"),
        ("no_such_module_here:x", "cannot import"),
    ]:
        with pytest.raises(UnknownScenario, match=says):
            load_scenario(bad)


def test_output_folder_problems_are_clear(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        prepare_output(blocker)
    with pytest.raises(OutputError, match="cannot write the output folder"):
        prepare_output(blocker / "below")
    # Only the last folder is created (as ``srtm demo --out``): a mistyped path fails.
    with pytest.raises(OutputError, match=r"the folder .*new' does not exist"):
        prepare_output(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()
    made = prepare_output(tmp_path / "new")
    assert made.is_dir()
    assert prepare_output(tmp_path / "new") == made  # an existing folder is fine


def test_priority_classes_are_the_clients_own() -> None:
    client = importlib.import_module("srtm.client")
    assert srtm.sim.Priority is client.Priority
    assert [p.name for p in Priority] == [
        "PREPAYMENT",
        "CUSTOMER",
        "INSTALLATION",
        "ROUTINE",
        "BULK",
    ]
    assert [int(p) for p in Priority] == [0, 1, 2, 3, 4]


def test_reference_scenarios_are_a_day_of_the_reference_figures() -> None:
    for name, build in SCENARIOS.items():
        s = build()
        assert s.name == name
        assert s.duration == DAY
        assert s.policy.capacity == 1350
        assert s.policy.threshold == 0.8
        assert len(s.users) == 50
        assert s.description
        assert not s.policy.oversubscribed
        assert all(isinstance(u.client, Client | OpenLoop) for u in s.users)
