"""TrafficPolicy validates itself and says exactly what is wrong."""

from __future__ import annotations

import logging
import math

import pytest

from srtm import PolicyError, TrafficPolicy
from srtm.policy import parse_duis_version


def test_defaults_and_derived_figures() -> None:
    policy = TrafficPolicy(capacity=1350, allocations={"a": 400, "b": 20}, floor=50)
    assert policy.budget == pytest.approx(0.8 * 1350)
    assert policy.guarantee("a") == 400
    assert policy.guarantee("b") == 50  # lifted to the floor
    # Unnamed Users hold nothing alone: they share the collective, lifted to the floor.
    assert policy.guarantee("unknown") == 0
    assert policy.collective_guarantee == 50
    assert policy.named("a")
    assert not policy.named("unknown")
    assert policy.weight("a") == 400  # weights default to the guarantee
    assert policy.allocated == 500  # 400 + 50 + the collective's 50
    assert not policy.oversubscribed
    assert policy.control_period == policy.window / 4  # a flood shows within 0.25 s
    assert policy.async_storage_uri == "async+memory://"
    assert policy.duis_429_version == (4, 1)


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"capacity": 0}, "capacity", "greater than 0"),
        ({"capacity": -5}, "capacity", "greater than 0"),
        ({"capacity": math.inf}, "capacity", "finite"),
        ({"capacity": "100"}, "capacity", "number"),
        ({"capacity": True}, "capacity", "number"),
        ({"capacity": 100, "threshold": 0}, "threshold", "greater than 0"),
        ({"capacity": 100, "threshold": 1.2}, "threshold", "(0, 1]"),
        ({"capacity": 100, "allocations": {"a": -1}}, "allocations['a']", "negative"),
        ({"capacity": 100, "allocations": {"": 1}}, "allocations", "non-empty"),
        ({"capacity": 100, "allocations": [("a", 1)]}, "allocations", "mapping"),
        ({"capacity": 100, "default_allocation": -1}, "default_allocation", "negative"),
        ({"capacity": 100, "weights": {"a": math.nan}}, "weights['a']", "finite"),
        ({"capacity": 100, "window": 0}, "window", "greater than 0"),
        ({"capacity": 100, "window": 7200}, "window", "3600"),
        ({"capacity": 100, "release_ratio": 1.0}, "release_ratio", "(0, 1)"),
        ({"capacity": 100, "engage_after": 0}, "engage_after", ">= 1"),
        ({"capacity": 100, "nodes": 1.5}, "nodes", "integer"),
        ({"capacity": 100, "duis_429_from": "four"}, "duis_429_from", "DUIS version"),
        ({"capacity": 100, "storage": "mongodb://db"}, "storage", "not supported"),
        ({"capacity": 100, "storage": "localhost:6379"}, "storage", "URI"),
    ],
)
def test_nonsense_is_refused_with_the_field_named(
    kwargs: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(PolicyError) as info:
        TrafficPolicy(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert words in str(info.value)
    assert str(info.value).startswith(field)


def test_oversubscription_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="srtm.policy"):
        policy = TrafficPolicy(capacity=100, threshold=0.5, allocations={"a": 30, "b": 30})
    assert policy.oversubscribed
    assert "over-subscribed" in caplog.text
    assert "60.0" in caplog.text
    assert "50.0" in caplog.text


def test_policy_is_frozen_and_copies_its_mappings() -> None:
    allocations = {"a": 10.0}
    policy = TrafficPolicy(capacity=100, allocations=allocations)
    allocations["a"] = 99.0
    assert policy.guarantee("a") == 10.0
    with pytest.raises(AttributeError):
        policy.capacity = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("4.1", (4, 1)),
        ("3.0", (3, 0)),
        (" 5 ", (5,)),
        ("4.1.2", (4, 1, 2)),
        ("x", None),
        ("", None),
        ("4..1", None),
        ("-4.1", None),
        ("4.1a", None),
    ],
)
def test_duis_versions(text: str, parsed: tuple[int, ...] | None) -> None:
    assert parse_duis_version(text) == parsed


def test_redis_schemes_are_accepted() -> None:
    for uri in ("redis://h:6379", "rediss://h", "redis+cluster://h:7000", "async+redis://h"):
        policy = TrafficPolicy(capacity=10, storage=uri)
        assert policy.async_storage_uri.startswith("async+redis")
        assert not policy.sync_storage_uri.startswith("async+")


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        # capacity x window below one request: every request would be refused.
        ({"capacity": 1e-9}, "capacity", "less than one request per window"),
        ({"capacity": 100, "window": 0.001}, "capacity", "less than one request per window"),
        ({"capacity": 2, "threshold": 0.3}, "threshold", "less than one per window"),
        ({"capacity": 100, "control_period": 1e-9}, "control_period", "at least 0.05 s"),
        ({"capacity": 100, "control_period": 0.01}, "control_period", "round trip"),
        # Keys that no request can carry (the header identity refuses them with 401).
        ({"capacity": 100, "allocations": {"Supplier A": 5}}, "allocations", "User ID"),
        ({"capacity": 100, "allocations": {"-lead": 5}}, "allocations", "User ID"),
        ({"capacity": 100, "weights": {"x" * 129: 1}}, "weights", "User ID"),
        # The collective's guarantee is split in whole requests: below one is nothing.
        ({"capacity": 100, "default_allocation": 0.5}, "default_allocation", "less than one"),
        ({"capacity": 100, "floor": 0.5}, "floor", "less than one"),
        ({"capacity": 100, "unknown_users": "allow"}, "unknown_users", "'collective'"),
        (
            {"capacity": 100, "unknown_users": "refuse", "default_allocation": 5},
            "default_allocation",
            "refuse",
        ),
    ],
)
def test_policies_that_cannot_work_fail_at_construction(
    kwargs: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(PolicyError) as info:
        TrafficPolicy(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert words in str(info.value)


def test_the_smallest_workable_figures_are_accepted() -> None:
    policy = TrafficPolicy(
        capacity=1, threshold=1.0, window=1.0, control_period=0.05, default_allocation=1
    )
    assert policy.control_period == 0.05
    assert policy.collective_guarantee == 1
    # A per-identity default below one request is lifted like an allocation, not refused.
    lifted = TrafficPolicy(capacity=100, default_allocation=0.5, unknown_users="per_identity")
    assert lifted.guarantee("anyone") == 0.5
    assert lifted.collective_guarantee == 0


def test_allocations_below_one_request_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    allocations = {f"u{i}": 0.2 for i in range(8)} | {"big": 10}
    with caplog.at_level(logging.WARNING, logger="srtm.policy"):
        TrafficPolicy(capacity=100, allocations=allocations)
    assert "lifted to one request per window" in caplog.text
    assert "'u0': 0.2 SR/s" in caplog.text
    assert "and 3 more" in caplog.text  # eight Users named, five listed
    assert "'big'" not in caplog.text


@pytest.mark.parametrize("mode", ["collective", "refuse", "per_identity"])
def test_unknown_users_modes(mode: str) -> None:
    default = 0 if mode == "refuse" else 4
    policy = TrafficPolicy(
        capacity=100,
        allocations={"a": 30},
        default_allocation=default,
        floor=2,
        unknown_users=mode,  # type: ignore[arg-type]
    )
    assert policy.named("a")
    assert not policy.named("stranger")
    assert policy.guarantee("a") == 30
    expected = {"collective": (0, 4, 34), "refuse": (0, 0, 30), "per_identity": (4, 0, 30)}
    alone, together, allocated = expected[mode]
    assert policy.guarantee("stranger") == alone
    assert policy.collective_guarantee == together
    assert policy.allocated == allocated
