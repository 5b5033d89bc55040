"""The simulator's ledger is the MemoryLedger's twin on the virtual clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from srtm.ledger import MemoryLedger, Quota
from srtm.sim._ledger import SimLedger

quotas = st.builds(
    lambda limit, guarantee, budget, extra: Quota(limit, guarantee, budget, budget + extra),
    st.integers(0, 40),
    st.integers(0, 20),
    st.integers(0, 60),
    st.integers(0, 30),
)
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("take"), st.integers(0, 4), st.sampled_from("abc"), st.integers(1, 25), quotas
        ),
        st.tuples(
            st.just("read"),
            st.integers(0, 4),
            # refusals counted locally, for the window being read and the two before
            st.dictionaries(st.integers(0, 2), st.dictionaries(st.sampled_from("abc"),
                                                               st.integers(1, 9))),
        ),
    ),
    max_size=60,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(ops=ops)
def test_sim_ledger_and_memory_ledger_agree(ops: list[tuple[object, ...]]) -> None:
    memory, sim = MemoryLedger(), SimLedger()
    window = 0
    for op in ops:
        if op[0] == "take":
            _, dw, user, n, quota = op
            assert isinstance(dw, int)
            assert isinstance(user, str)
            assert isinstance(n, int)
            assert isinstance(quota, Quota)
            window = max(window, dw)
            assert memory.take("p", window, user, n, quota) == sim.take("p", window, user, n, quota)
        else:
            _, dw, back = op
            assert isinstance(dw, int)
            assert isinstance(back, dict)
            window = max(window, dw)
            pending = {window - k: counts for k, counts in back.items() if window - k >= 0}
            a = memory.flush_and_read("p", pending, window)
            b = sim.flush_and_read("p", pending, window)
            assert a == tuple(dict(x) for x in b)
    memory.close()


def test_counts_and_bulk_admission_track_the_window() -> None:
    sim = SimLedger()
    quota = Quota(limit=10, guarantee=2, budget=12, cap=15)
    sim.take("p", 3, "a", 4, quota)
    sim.admit_all("p", 3, [("b", 5), ("a", 1)])
    admitted, total, most = sim.counts("p", 3)
    assert dict(admitted) == {"a": 5, "b": 5}
    assert (total, most) == (10, 5)
    assert sim.counts("p", 4) == ({}, 0, 0)
    previous, current = sim.flush_and_read("p", {}, 4)
    assert previous == {"a": 5, "b": 5}
    assert current == {}
    # Old windows are forgotten once the governor has moved on.
    sim.flush_and_read("p", {}, 9)
    assert sim.counts("p", 3) == ({}, 0, 0)
