"""Built-in scenarios run once per test session at reduced scale, shared by the tests."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

from srtm.sim import Result, load_scenario, run_scenario

if TYPE_CHECKING:
    from collections.abc import Callable

#: A day compressed 20-fold: 4,320 windows, every rate and capacity as at full scale.
SCALE = 0.05
#: Scenarios run less compressed. Compression shortens the outage but not the clients'
#: timings (the gate's Retry-After grows through an outage, to 60 s of real time): at
#: 0.05 the outage lasts 3 minutes and a minute of it is spent coming back. At 0.2 it
#: lasts 12 minutes.
SCALES = {"dsp-outage": 0.2}

_cache: dict[tuple[str, float | None], Result] = {}


@pytest.fixture(scope="session")
def reduced() -> Callable[..., Result]:
    """``reduced(name, control_period=None)``: a built-in scenario at reduced scale, run once.

    ``control_period`` replaces the reference policy's (one recomputation a second), for
    example 0.25 for the core's default.
    """

    def get(name: str, control_period: float | None = None) -> Result:
        key = (name, control_period)
        scale = SCALES.get(name, SCALE)
        if key not in _cache:
            scenario = load_scenario(name)
            if control_period is not None:
                policy = dataclasses.replace(scenario.policy, control_period=control_period)
                scenario = dataclasses.replace(scenario, policy=policy)
            _cache[key] = run_scenario(scenario, scale=scale, progress=False)
        return _cache[key]

    return get
