"""Built-in scenarios run once per test session at reduced scale, shared by the tests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from srtm.sim import Result, run_scenario

if TYPE_CHECKING:
    from collections.abc import Callable

#: A day compressed 20-fold: 4,320 windows, every rate and capacity as at full scale.
SCALE = 0.05

_cache: dict[str, Result] = {}


@pytest.fixture(scope="session")
def reduced() -> Callable[[str], Result]:
    """``reduced(name)``: the built-in scenario's result at :data:`SCALE` (run once)."""

    def get(name: str) -> Result:
        if name not in _cache:
            _cache[name] = run_scenario(name, scale=SCALE, progress=False)
        return _cache[name]

    return get
