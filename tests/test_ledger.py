"""The admission step, its Lua twin on a real Redis, and the memory and Redis ledgers."""

from __future__ import annotations

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from srtm.aio import ledger as aio_ledger
from srtm.ledger import (
    MemoryLedger,
    Quota,
    Reason,
    RedisLedger,
    admit_count,
    redis_keys,
    room,
)

counts = st.integers(min_value=0, max_value=60)


@st.composite
def states(draw: st.DrawFn) -> tuple[int, int, int, Quota]:
    cap = draw(counts)
    quota = Quota(
        limit=draw(counts), guarantee=draw(counts), budget=draw(st.integers(0, cap)), cap=cap
    )
    return draw(st.integers(1, 40)), draw(counts), draw(counts), quota


def one_at_a_time(n: int, used: int, total: int, quota: Quota) -> tuple[int, Reason]:
    """The rule stated request by request, the way the docs state it."""
    admitted, reason = 0, Reason.ADMITTED
    for _ in range(n):
        if total >= quota.cap:
            reason = Reason.CAPACITY
            break
        if used >= quota.limit:
            reason = Reason.USER
            break
        if total >= quota.budget and used >= quota.guarantee:
            reason = Reason.USER
            break
        used, total, admitted = used + 1, total + 1, admitted + 1
    return admitted, reason


@given(states())
def test_admit_count_is_the_request_by_request_rule(state: tuple[int, int, int, Quota]) -> None:
    assert admit_count(*state) == one_at_a_time(*state)


@given(states())
def test_admit_count_never_passes_a_limit(state: tuple[int, int, int, Quota]) -> None:
    n, used, total, quota = state
    k, _ = admit_count(n, used, total, quota)
    assert 0 <= k <= n
    if k:
        assert used + k <= quota.limit
        assert total + k <= quota.cap
        # the last one admitted (and so every one before it) met the budget rule
        assert total + k - 1 < quota.budget or used + k - 1 < quota.guarantee


def test_budget_spent_admits_only_within_guarantee() -> None:
    quota = Quota(limit=100, guarantee=10, budget=80, cap=100)
    assert admit_count(5, used=3, total=80, quota=quota) == (5, Reason.ADMITTED)
    assert admit_count(5, used=10, total=80, quota=quota) == (0, Reason.USER)
    assert admit_count(5, used=9, total=99, quota=quota) == (1, Reason.CAPACITY)
    # The pool is full: that is the reason, even for a User also at its own limit.
    assert admit_count(1, used=100, total=100, quota=quota) == (0, Reason.CAPACITY)


@pytest.mark.redis
@settings(max_examples=150, deadline=None)
@given(state=states())
def test_lua_script_is_the_twin_of_admit_count(
    redis_url: str, state: tuple[int, int, int, Quota]
) -> None:
    n, used, total, quota = state
    client = redis.Redis.from_url(redis_url)
    ledger = RedisLedger(redis_url)
    try:
        check_twin(client, ledger, n, used, total, quota)
    finally:
        ledger.close()
        client.close()


def check_twin(
    client: redis.Redis, ledger: RedisLedger, n: int, used: int, total: int, quota: Quota
) -> None:
    offered_key, admitted_key = redis_keys("twin", 7)
    client.delete(offered_key, admitted_key)
    client.hset(admitted_key, mapping={"u": used, "": total})
    outcome = ledger.take("twin", 7, "u", n, quota)
    expected_k, expected_reason = admit_count(n, used, total, quota)
    assert (outcome.admitted, outcome.reason) == (expected_k, expected_reason)
    assert (outcome.used, outcome.total) == (used + expected_k, total + expected_k)
    assert int(client.hget(offered_key, "u") or 0) == n


def test_memory_ledger_counts_and_admits() -> None:
    ledger = MemoryLedger()
    quota = Quota(limit=3, guarantee=1, budget=10, cap=10)
    results = [ledger.take("p", 1, "u", 1, quota) for _ in range(5)]
    assert [r.admitted for r in results] == [1, 1, 1, 0, 0]
    assert results[-1].reason is Reason.USER
    assert results[-1].used == 3
    # A new window starts from zero: counters are keyed by window, not by limit.
    assert ledger.take("p", 2, "u", 1, quota).admitted == 1
    assert ledger.flush_and_read("p", {1: {"u": 4}}, 2) == ({"u": 9}, {"u": 1})


@pytest.mark.redis
def test_redis_ledgers_sync_and_async_share_counters(redis_db: str) -> None:
    import asyncio

    quota = Quota(limit=5, guarantee=0, budget=100, cap=100)
    sync = RedisLedger(redis_db)
    assert sync.take("p", 3, "u", 3, quota).admitted == 3

    async def other_node() -> tuple[int, dict[str, int]]:
        aio = aio_ledger.RedisLedger("async+" + redis_db)
        outcome = await aio.take("p", 3, "u", 4, quota)
        counts = (await aio.flush_and_read("p", {3: {"u": 10, "v": 2}}, 3))[1]
        await aio.close()
        return outcome.admitted, counts

    admitted, counts = asyncio.run(other_node())
    assert admitted == 2  # one global limit of 5 across both
    assert counts == {"u": 17, "v": 2}
    assert sync.flush_and_read("p", {}, 4) == ({"u": 17, "v": 2}, {})
    sync.close()


async def test_aio_memory_ledger_matches_sync() -> None:
    quota = Quota(limit=4, guarantee=2, budget=5, cap=6)
    sync, aio = MemoryLedger(), aio_ledger.MemoryLedger()
    for user, n in [("a", 3), ("b", 2), ("a", 2), ("b", 3), ("c", 4), ("c", 1)]:
        expected = sync.take("p", 1, user, n, quota)
        got = await aio.take("p", 1, user, n, quota)
        assert got == expected
    assert await aio.flush_and_read("p", {}, 1) == sync.flush_and_read("p", {}, 1)


@given(
    steps=st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(1, 5), st.integers(0, 3)),
        min_size=1,
        max_size=40,
    ),
    quotas=st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, 6), st.integers(0, 30), st.integers(0, 30)),
        min_size=4,
        max_size=4,
    ),
)
def test_memory_admit_is_take_when_everything_fits(
    steps: list[tuple[str, int, int]], quotas: list[tuple[int, int, int, int]]
) -> None:
    """The gate's fast path (admit, then take only if it returned -1) decides and
    counts exactly what take alone does, on any sequence of requests and quotas."""
    fast, plain = MemoryLedger(), MemoryLedger()
    for user, n, which in steps:
        limit, guarantee, budget, cap = quotas[which]
        quota = Quota(limit=limit, guarantee=guarantee, budget=min(budget, cap), cap=cap)
        expected = plain.take("p", 1, user, n, quota)
        left = fast.admit("p", 1, user, n, quota)
        if left >= 0:
            assert expected.admitted == n
            assert left == room(expected.used, expected.total, quota)
        else:
            assert fast.take("p", 1, user, n, quota) == expected
    assert fast.flush_and_read("p", {}, 1) == plain.flush_and_read("p", {}, 1)
    assert fast._windows[("p", 1)].admitted == plain._windows[("p", 1)].admitted
