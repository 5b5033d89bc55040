"""Rotating identities cannot multiply guarantees: srtm.Gate on memory:// and a virtual clock.

An attacker who sends every request under a new X-Service-User-ID used to be "within
its guarantee" every time (with a positive ``default_allocation``), and took the whole
capacity from the named Users. By default the unnamed Users share one collective
allocation: these tests drive 1,000 new identities a second through the real gate and
check, window by window, that the named Users within their allocations keep every
request, that the identities together stay within what the named Users leave, and that
the governor forgets them once they stop.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srtm import Gate, Identity, TrafficPolicy
from srtm.governor import MAX_MEMBERS

if TYPE_CHECKING:
    from collections.abc import Iterator

CAPACITY, THRESHOLD = 100.0, 0.8
NAMED = {"A": 30.0, "B": 20.0}  # guarantees, SR/s; 50 of the 80 SR/s budget
SENDS = {"A": 25, "B": 15}  # what each named User sends per second: within its allocation
PERIOD = 0.25  # control period (the default for a 1 s window)


def policy(**kwargs: object) -> TrafficPolicy:
    base: dict[str, object] = {
        "capacity": CAPACITY,
        "threshold": THRESHOLD,
        "allocations": NAMED,
        "default_allocation": 10.0,
        "control_period": PERIOD,
    }
    return TrafficPolicy(**(base | kwargs))  # type: ignore[arg-type]


def minted(prefix: str = "rot") -> Iterator[str]:
    """A never-ending supply of fresh, valid User IDs."""
    n = 0
    while True:
        n += 1
        yield f"{prefix}-{n}"


def run(
    gate: Gate,
    seconds: int,
    *,
    per_second: int,
    attack_from: float,
    named: dict[str, int] = SENDS,
    ids: Iterator[str] | None = None,
    offset: int = 0,
) -> tuple[Counter[tuple[int, str]], Counter[int]]:
    """Drive the gate on a virtual clock, ticking every control period.

    In each control period the attacker's requests come first (the worst order for the
    named Users), then the named Users' share of their per-second demand. Returns the
    named Users' admitted counts per (window, User) and the identities' per window;
    the run starts at second ``offset``.
    """
    ids = ids if ids is not None else minted()
    slices = round(1 / PERIOD)
    admitted: Counter[tuple[int, str]] = Counter()
    stolen: Counter[int] = Counter()
    for second in range(offset, offset + seconds):
        for k in range(slices):
            start = second + k * PERIOD
            gate.tick(now=start)
            if start >= attack_from:
                share = per_second // slices
                for i in range(share):
                    now = start + PERIOD * i / (2 * share)
                    stolen[second] += gate.decide(Identity(next(ids), "4.1"), now=now).admitted
            for user, count in named.items():
                share = count // slices + (1 if k < count % slices else 0)
                for i in range(share):
                    now = start + PERIOD / 2 + PERIOD * i / (2 * share)
                    admitted[second, user] += gate.decide(Identity(user, "4.1"), now=now).admitted
    return admitted, stolen


def test_a_thousand_new_identities_a_second_cannot_take_named_guarantees() -> None:
    gate = Gate(policy(), background=False)
    admitted, stolen = run(gate, 20, per_second=1000, attack_from=2.0)
    for second in range(20):
        for user, count in SENDS.items():
            assert admitted[second, user] == count, (second, user)
    budget = int(CAPACITY * THRESHOLD)
    for second in range(2, 20):
        # Together the identities got something, but never more than the named Users'
        # in-allocation traffic leaves of the budget.
        assert stolen[second] <= budget - sum(SENDS.values()), second
    assert sum(stolen.values()) > 0  # the collective is throttled, not shut out
    gov = gate.pool("default").governor
    assert gov.active
    # Each identity sent once: it holds no guarantee that adds up, whatever their number.
    members = [u for u in gov.demand if gov.member(u)]
    assert len(members) > 1000
    assert sum(gov.guarantee(u) for u in members) <= 10.0 + 1e-9


def test_per_identity_defaults_are_the_risk_the_docs_name() -> None:
    """The same attack against ``unknown_users="per_identity"`` takes named requests."""
    gate = Gate(policy(unknown_users="per_identity"), background=False)
    admitted, stolen = run(gate, 6, per_second=1000, attack_from=2.0)
    lost = sum(SENDS[user] - admitted[second, user] for second in range(2, 6) for user in SENDS)
    assert lost > 0
    assert max(stolen[s] for s in range(2, 6)) > CAPACITY * THRESHOLD - sum(SENDS.values())


def test_identities_that_come_back_are_held_to_the_collective_share() -> None:
    """A pool of 5,000 identities reused in turn: each is seen by the governor, yet the
    members together hold no more than the collective's share."""
    pool = [f"reused-{i}" for i in range(5000)]

    def cycle() -> Iterator[str]:
        while True:
            yield from pool

    gate = Gate(policy(), background=False)
    admitted, stolen = run(gate, 16, per_second=2000, attack_from=2.0, ids=cycle())
    for second in range(16):
        for user, count in SENDS.items():
            assert admitted[second, user] == count, (second, user)
    for second in range(4, 16):
        assert stolen[second] <= CAPACITY * THRESHOLD - sum(SENDS.values()), second


def test_governor_state_is_bounded_and_idle_identities_expire() -> None:
    gate = Gate(policy(), background=False)
    gov = gate.pool("default").governor
    ids = minted()
    peak = 0
    for second in range(15):
        run(gate, 1, per_second=1000, attack_from=0.0, named={}, ids=ids, offset=second)
        peak = max(peak, len(gov.demand))
    # A rotating identity is forgotten once its demand has decayed (about 5 s at the
    # default smoothing), so 15,000 identities never leave more than a few seconds' worth.
    assert 1000 <= peak <= 8000
    for k in range(160):  # the attack stops; 40 s of quiet
        gate.tick(now=15 + k * PERIOD)
    assert len(gov.demand) == 0
    assert gov.collective_demand == 0.0


def test_members_tracked_one_by_one_are_capped() -> None:
    gov = Gate(policy(), background=False).pool("default").governor
    offered = {f"m-{i}": 1.0 + i % 7 for i in range(MAX_MEMBERS + 500)}
    offered |= {"A": 20.0}
    gov.update(offered, 1.0)
    members = [u for u in gov.demand if gov.member(u)]
    assert len(members) == MAX_MEMBERS
    # The busiest are kept; the collective's own demand still counts every member.
    dropped = offered.keys() - gov.demand.keys()
    assert len(dropped) == 500
    assert max(offered[u] for u in dropped) <= min(gov.demand[u] for u in members)
    assert gov.collective_demand == pytest.approx(sum(v for u, v in offered.items() if u != "A"))


@settings(max_examples=25, deadline=None)
@given(
    a=st.integers(min_value=1, max_value=40),
    b=st.integers(min_value=1, max_value=30),
    default=st.sampled_from([1.0, 5.0, 10.0, 20.0]),
    per_second=st.sampled_from([40, 200, 1000]),
    pool=st.one_of(st.none(), st.integers(min_value=1, max_value=3000)),
    data=st.data(),
)
def test_named_users_within_their_allocation_keep_it_whatever_the_identities(
    a: int, b: int, default: float, per_second: int, pool: int | None, data: st.DataObject
) -> None:
    """Property: A and B (allocations fitting the budget with the collective's) send at
    most their allocations and keep every request, against any number of identities,
    new each time (``pool`` None) or reused from a pool of any size."""
    budget = CAPACITY * THRESHOLD
    if a + b + default > budget:
        return
    sends = {
        "A": data.draw(st.integers(min_value=0, max_value=a), label="A sends"),
        "B": data.draw(st.integers(min_value=0, max_value=b), label="B sends"),
    }
    ids: Iterator[str] | None = None
    if pool is not None:
        names = [f"p-{i}" for i in range(pool)]

        def cycle() -> Iterator[str]:
            while True:
                yield from names

        ids = cycle()
    gate = Gate(
        policy(allocations={"A": float(a), "B": float(b)}, default_allocation=default),
        background=False,
    )
    admitted, _ = run(gate, 6, per_second=per_second, attack_from=1.0, named=sends, ids=ids)
    for second in range(6):
        for user, count in sends.items():
            assert admitted[second, user] == count, (second, user)
