"""DemoConfig checks itself when built, naming the setting."""

from __future__ import annotations

import pytest

from srtm import PolicyError, SrtmError
from srtm.demo import DEFAULT_SUPPLIERS, DemoConfig, DemoConfigError, Supplier


def test_the_defaults_make_a_sound_demo() -> None:
    cfg = DemoConfig()
    assert cfg.budget == 160
    # The allocations add up to the budget and the Suppliers' normal traffic stays well
    # below it, so traffic management engages for the incident and for nothing else.
    assert sum(s.allocation for s in cfg.suppliers) == cfg.budget
    assert sum(s.rate for s in cfg.suppliers) < 0.75 * cfg.budget
    assert all(s.rate < 0.9 * 0.9 * s.allocation for s in cfg.suppliers)  # under the pace
    assert cfg.runaway.label == "D"
    assert [s.label for s in cfg.well_behaved] == ["A", "B", "C", "E"]
    assert (cfg.amok_start, cfg.amok_end) == pytest.approx((9, 21))
    assert not cfg.policy().oversubscribed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration": 0}, "duration: must be more than 0"),
        ({"duration": float("nan")}, "duration:"),
        ({"duration": 5}, "duration: too short"),
        ({"amok_from": 0.8, "amok_to": 0.2}, "amok_from/amok_to"),
        ({"flood_connections": 0}, "flood_connections"),
        ({"suppliers": tuple(s for s in DEFAULT_SUPPLIERS if s.runaway)}, "at least one well-"),
        ({"suppliers": tuple(s for s in DEFAULT_SUPPLIERS if not s.runaway)}, "exactly one"),
        ({"suppliers": (*DEFAULT_SUPPLIERS, DEFAULT_SUPPLIERS[0])}, "unique"),
    ],
)
def test_bad_settings_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DemoConfigError, match=message):
        DemoConfig(**kwargs)  # type: ignore[arg-type]


def test_errors_are_srtm_errors() -> None:
    assert issubclass(DemoConfigError, SrtmError)
    assert issubclass(DemoConfigError, ValueError)


def test_a_policy_that_cannot_work_fails_when_built() -> None:
    with pytest.raises(PolicyError, match="capacity"):
        DemoConfig(capacity=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label": "not a label"}, "label"),
        ({"rate": 0}, "X.rate"),
        ({"allocation": -1}, "X.allocation"),
        ({"mix": (("2.2", 0.5),)}, "X.mix"),
    ],
)
def test_bad_suppliers_are_named(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "label": "X",
        "user_id": "90-B3-D5-1F-30-01-00-99",
        "allocation": 10,
        "rate": 5,
    }
    with pytest.raises(DemoConfigError, match=message):
        Supplier(**{**base, **kwargs})  # type: ignore[arg-type]
