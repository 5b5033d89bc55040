"""Counting provably admitted offers in bulk changes nothing: the fast and the exact runs agree.

``exact=True`` sends every offer through ``Gate.decide``; the default counts offers the
engine proves admitted straight into the ledger, and whole quiet windows in bulk. Every
built-in scenario, at the core's default control period (a quarter window: the gate goes
slice by slice) and at one control period per window (whole quiet windows in bulk), must
come out identical, window by window.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from srtm.sim import SCENARIOS
from srtm.sim._runner import compile_scenario, simulate

FIELDS = [
    "demand",
    "offered",
    "admitted",
    "capacity",
    "active",
    "backlog",
    "refused_user",
    "refused_capacity",
    "lost",
    "queued",
    "priority_admitted",
    "priority_wait_max",
    "latency_count",
    "latency_sum",
    "latency_max",
    "class_count",
    "class_wait",
]


@pytest.mark.parametrize("control_period", [0.25, 1.0], ids=["quarter-window", "window"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fast_and_exact_runs_are_identical(name: str, control_period: float) -> None:
    scenario = SCENARIOS[name]()
    policy = dataclasses.replace(scenario.policy, control_period=control_period)
    scenario = dataclasses.replace(scenario, policy=policy)
    assert scenario.policy.control_period == control_period
    compiled = compile_scenario(scenario, 0.01)
    fast = simulate(compiled)
    exact = simulate(compiled, exact=True)
    assert fast[0].counted > 0  # the fast run did count in bulk...
    assert exact[0].counted == 0  # ...and the exact one never did
    assert exact[0].decisions > fast[0].decisions
    for a, b in zip(fast, exact, strict=True):
        for field in FIELDS:
            assert np.array_equal(getattr(a, field), getattr(b, field)), (a.mode, field)
        assert a.latency_hist == b.latency_hist
        assert a.drains == b.drains
