"""The two engines: FCFS up to capacity, and the gate's bulk path proved sound."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from srtm import TrafficPolicy
from srtm.sim._engines import FcfsEngine, GateEngine, slice_order

POLICY = TrafficPolicy(capacity=100, threshold=0.8, allocations={"a": 30, "b": 20, "c": 5})
USERS = [("a", "4.1"), ("b", "4.1"), ("c", "3.2"), ("d", "4.1")]


def test_fcfs_admits_everything_that_fits() -> None:
    engine = FcfsEngine(POLICY)
    engine.tick(0.0)
    assert engine.fits([0, 1], [40, 50], 0.0)
    verdicts = engine.decide([0, 1], [40, 50], 0.0, 0)
    assert [v[0] for v in verdicts] == [40, 50]
    assert all(v[3] == 200 for v in verdicts)


def test_fcfs_shares_an_overflowing_slice_in_proportion() -> None:
    engine = FcfsEngine(POLICY)
    engine.tick(0.0)
    engine.decide([0], [40], 0.0, 0)  # 60 left in the window
    assert not engine.fits([1, 2], [90, 30], 0.25)
    verdicts = engine.decide([1, 2], [90, 30], 0.25, 1)
    assert [v[0] for v in verdicts] == [45, 15]
    assert {v[3] for v in verdicts} == {503}
    assert all(v[1] is None for v in verdicts)  # an overloaded back end gives no Retry-After
    assert engine.decide([0], [1], 0.5, 2)[0][0] == 0  # the window is full
    engine.tick(1.0)
    assert engine.decide([0], [1], 1.0, 4)[0][0] == 1  # the next one is not


def test_fcfs_capacity_changes_at_run_time() -> None:
    engine = FcfsEngine(POLICY)
    engine.set_capacity(0, 0.0)
    engine.tick(0.0)
    assert engine.decide([0], [5], 0.0, 0)[0][0] == 0
    engine.set_capacity(100, 1.0)
    engine.tick(1.0)
    assert engine.decide([0], [5], 1.0, 4)[0][0] == 5


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 3), st.integers(1, 80)), max_size=4),
        min_size=1,
        max_size=12,
    ),
    st.floats(0, 150),
)
def test_fcfs_never_exceeds_capacity(slices: list[list[tuple[int, int]]], capacity: float) -> None:
    engine = FcfsEngine(POLICY)
    engine.set_capacity(capacity, 0.0)
    per_window: dict[int, int] = {}
    for i, offers in enumerate(slices):
        now = i * 0.25
        users = [u for u, _ in offers]
        counts = [n for _, n in offers]
        engine.tick(now)
        verdicts = engine.decide(users, counts, now, i)
        for (k, _, _, _), n in zip(verdicts, counts, strict=True):
            assert 0 <= k <= n
        per_window[int(now)] = per_window.get(int(now), 0) + sum(v[0] for v in verdicts)
    assert all(total <= int(capacity + 1e-9) for total in per_window.values())


offer = st.tuples(st.integers(0, 3), st.integers(1, 60))
offers = st.lists(st.lists(offer, max_size=4, unique_by=lambda o: o[0]), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(offers=offers, capacity_drop=st.integers(0, 39))
def test_the_gates_bulk_path_is_sound(
    offers: list[list[tuple[int, int]]], capacity_drop: int
) -> None:
    # Two gates on the same traffic: one proves offers admitted and counts them in bulk,
    # the other sends every offer through Gate.decide. They must never differ.
    fast, exact = GateEngine(POLICY, USERS), GateEngine(POLICY, USERS, exact=True)
    for i, slice_offers in enumerate(offers):
        now = i * 0.25
        if i == capacity_drop:
            fast.set_capacity(40, now)
            exact.set_capacity(40, now)
        fast.tick(now)
        exact.tick(now)
        users = [u for u, _ in slice_offers]
        counts = [n for _, n in slice_offers]
        if not users:
            continue
        assert not exact.fits(users, counts, now)
        expected = exact.decide(users, counts, now, i)
        if fast.fits(users, counts, now):
            assert [v[0] for v in expected] == counts
            fast.admit(users, counts, now)
        else:
            assert fast.decide(users, counts, now, i) == expected
        assert fast.active == exact.active
    fast.close()
    exact.close()


def test_slice_order_is_a_permutation_that_varies() -> None:
    users = list(range(12))
    orders = {tuple(slice_order(users, tick)) for tick in range(50)}
    assert all(sorted(o) == users for o in orders)
    assert len(orders) > 40
    assert slice_order(users, 7) == slice_order(users, 7)
    firsts = {o[0] for o in orders}
    assert len(firsts) > 6  # nobody always goes first
