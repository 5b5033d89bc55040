"""Priority classes: the default order from the domain brief, and a User's own."""

from __future__ import annotations

import pytest

from srtm.client import DEFAULT_CLASSES, Priority, PriorityPolicy, default_priority

# The domain brief's table, row by row.
BRIEF = {
    Priority.PREPAYMENT: ["2.2", "2.5", "1.5", "7.1", "7.3"],
    Priority.CUSTOMER: ["4.3", "4.18", "2.1", "2.3", "1.6", "7.2", "7.4", "4.1.1"],
    Priority.INSTALLATION: ["8.1.1", "8.7.1", "8.11", "8.14.1", "12.2"],
    Priority.ROUTINE: ["1.1.1", "1.2.1", "3.1", "6.11", "6.23"],
    Priority.BULK: ["4.6.1", "4.8.1", "4.14", "4.17", "11.1", "11.2"],
}


@pytest.mark.parametrize(("cls", "variant"), [(c, v) for c, vs in BRIEF.items() for v in vs])
def test_default_classes_follow_the_brief(cls: Priority, variant: str) -> None:
    assert default_priority(variant) == cls


def test_the_table_has_nothing_the_brief_does_not() -> None:
    assert set(DEFAULT_CLASSES) == {v for vs in BRIEF.values() for v in vs}


def test_classes_are_ordered_most_urgent_first() -> None:
    assert Priority.PREPAYMENT < Priority.CUSTOMER < Priority.INSTALLATION
    assert Priority.INSTALLATION < Priority.ROUTINE < Priority.BULK


@pytest.mark.parametrize(
    ("variant", "cls"),
    [
        ("4.99", Priority.ROUTINE),  # other 4.x reads
        ("4.2", Priority.ROUTINE),
        ("8.3", Priority.INSTALLATION),  # other 8.x
        ("12.1", Priority.INSTALLATION),  # other 12.x
        ("9.1", Priority.ROUTINE),  # everything else
        ("unknown", Priority.ROUTINE),
        (" 2.2 ", Priority.PREPAYMENT),
    ],
)
def test_fallback_for_unlisted_variants(variant: str, cls: Priority) -> None:
    assert default_priority(variant) == cls


def test_a_mapping_overrides_and_keeps_defaults_for_the_rest() -> None:
    policy = PriorityPolicy(order={"4.6.1": 0, "2.2": 9})
    assert policy.classify("4.6.1") == 0
    assert policy.classify("2.2") == 9
    assert policy.classify("11.2") == Priority.BULK


def test_a_function_replaces_the_order() -> None:
    policy = PriorityPolicy(order=lambda variant: 0 if variant.startswith("4.") else 5)
    assert policy.classify("4.6.1") == 0
    assert policy.classify("2.2") == 5


def test_an_sr_priority_overrides_everything() -> None:
    assert PriorityPolicy().classify("4.6.1", override=-1) == -1
    assert PriorityPolicy(order=lambda v: 7).classify("2.2", override=2) == 2


def test_coerce_accepts_what_a_client_accepts() -> None:
    policy = PriorityPolicy(aging=None)
    assert PriorityPolicy.coerce(policy) is policy
    assert PriorityPolicy.coerce({"1": 1}).order == {"1": 1}
    assert PriorityPolicy.coerce(None).order is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"aging": 0}, ValueError),
        ({"aging": -1.0}, ValueError),
        ({"aging": float("nan")}, ValueError),
        ({"bulk_share": 0.0}, ValueError),
        ({"bulk_share": 1.5}, ValueError),
        ({"order": {"2.2": "high"}}, TypeError),
        ({"order": 42}, TypeError),
    ],
)
def test_bad_policies_say_what_is_wrong(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        PriorityPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_function_returning_a_non_int_is_an_error() -> None:
    policy = PriorityPolicy(order=lambda v: "urgent")  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="not an int"):
        policy.classify("2.2")


def test_bulk_is_from_the_bulk_class_down() -> None:
    policy = PriorityPolicy(bulk_from=Priority.ROUTINE)
    assert not policy.is_bulk(Priority.INSTALLATION)
    assert policy.is_bulk(Priority.ROUTINE)
    assert policy.is_bulk(Priority.BULK)
