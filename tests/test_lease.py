"""Leases: blocks of a User's admissions granted by the store, spent locally.

Unit tests run gates on an injected clock over an in-memory stand-in for a shared store
(several gates, one store, as several nodes share one Redis); the Redis tests run the
real script.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from srtm import Gate, Identity, PolicyError, Reason, TrafficPolicy
from srtm.aio.gate import AsyncGate
from srtm.lease import Lease, LeasePolicy, grant_count
from srtm.ledger import Outcome, Quota, RedisLedger, admit_count, redis_keys

if TYPE_CHECKING:
    from collections.abc import Mapping

ALLOCATIONS = {"a": 40.0, "b": 30.0, "c": 10.0}


# -- a shared store in memory -----------------------------------------------------------


class FakeStore:
    """What the Redis script does, in memory, shared by several gates; counts calls."""

    def __init__(self) -> None:
        self.offered: dict[tuple[str, int], dict[str, int]] = {}
        self.admitted: dict[tuple[str, int], dict[str, int]] = {}
        self.calls = 0
        self.failing = False

    def call(self) -> None:
        if self.failing:
            raise ConnectionError("store down")
        self.calls += 1

    def granted(self, pool: str, window: int) -> int:
        """The pool's admitted count in the store: granted leases included."""
        return self.admitted.get((pool, window), {}).get("", 0)


class FakeLedger:
    """A ledger on a :class:`FakeStore`: the same results as RedisLedger, no Redis."""

    uri = "redis://fake"

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def take(self, pool: str, window: int, user: str, n: int, quota: Quota) -> Outcome:
        return self.grant(pool, window, user, n, n, quota)

    def grant(
        self,
        pool: str,
        window: int,
        user: str,
        n: int,
        want: int,
        quota: Quota,
        earlier: int = 0,
    ) -> Outcome:
        self.store.call()
        offered = self.store.offered.setdefault((pool, window), {})
        offered[user] = offered.get(user, 0) + n + earlier
        counts = self.store.admitted.setdefault((pool, window), {})
        used, total = counts.get(user, 0), counts.get("", 0)
        k, reason = grant_count(n, want, used, total, quota)
        counts[user], counts[""] = used + k, total + k
        return Outcome(k, reason, used + k, total + k)

    def flush_and_read(
        self, pool: str, pending: Mapping[int, Mapping[str, int]], window: int
    ) -> tuple[dict[str, int], dict[str, int]]:
        self.store.call()
        for w, counts in pending.items():
            offered = self.store.offered.setdefault((pool, w), {})
            for user, count in counts.items():
                offered[user] = offered.get(user, 0) + count
        return (
            dict(self.store.offered.get((pool, window - 1), {})),
            dict(self.store.offered.get((pool, window), {})),
        )

    def close(self) -> None:
        pass


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    """Gates built on ``redis://fake`` share this store."""
    import srtm.gate

    shared = FakeStore()
    real = srtm.gate.ledger_for

    def ledger_for(policy: TrafficPolicy) -> object:
        if policy.storage == "redis://fake":
            return FakeLedger(shared)
        return real(policy)

    monkeypatch.setattr(srtm.gate, "ledger_for", ledger_for)
    return shared


def policy(**kwargs: object) -> TrafficPolicy:
    base: dict[str, object] = {
        "capacity": 100,
        "threshold": 0.8,
        "allocations": ALLOCATIONS,
        "storage": "redis://fake",
        "lease": LeasePolicy(size=8, horizon=0.1),
    }
    return TrafficPolicy(**(base | kwargs))  # type: ignore[arg-type]


def offer(
    gates: list[Gate], second: int, demand: dict[str, int], *, slices: int = 100
) -> dict[str, int]:
    """Offer each User's demand for one window, evenly, round-robin over the gates."""
    for gate in gates:
        gate.tick(now=float(second))
    admitted = dict.fromkeys(demand, 0)
    k = 0
    for s in range(slices):
        now = second + (s + 0.5) / slices
        if s and s % (slices // 4) == 0:
            for gate in gates:
                gate.tick(now=now)
        for user, total in demand.items():
            share = total // slices + (1 if s < total % slices else 0)
            for _ in range(share):
                gate = gates[k % len(gates)]
                k += 1
                admitted[user] += gate.decide(Identity(user, "4.1"), now=now).admitted
    return admitted


# -- the policy and the sizing ----------------------------------------------------------


def test_lease_policy_validates_itself() -> None:
    with pytest.raises(PolicyError, match=r"lease\.size"):
        LeasePolicy(size=0)
    with pytest.raises(PolicyError, match=r"lease\.size"):
        LeasePolicy(size=True)
    with pytest.raises(PolicyError, match=r"lease\.horizon"):
        LeasePolicy(horizon=0)
    with pytest.raises(PolicyError, match=r"lease\.horizon"):
        LeasePolicy(horizon=float("nan"))
    with pytest.raises(PolicyError, match="lease"):
        TrafficPolicy(capacity=10, lease=8)  # type: ignore[arg-type]
    assert TrafficPolicy(capacity=10).lease is None  # off by default


def test_block_size_follows_the_rate_and_the_window_end() -> None:
    lease = LeasePolicy(size=32, horizon=0.05)
    assert lease.want(1, 0.0, 1.0) == 1  # no estimate yet: exactly what is needed
    assert lease.want(1, 100.0, 1.0) == 5  # 100 SR/s for 50 ms
    assert lease.want(1, 10_000.0, 1.0) == 32  # capped at size
    assert lease.want(1, 10_000.0, 0.001) == 10  # no more than the rest of the window uses
    assert lease.want(40, 100.0, 1.0) == 40  # never fewer than asked


counts = st.integers(min_value=0, max_value=60)


@st.composite
def grants(draw: st.DrawFn) -> tuple[int, int, int, int, Quota]:
    cap = draw(counts)
    quota = Quota(
        limit=draw(counts), guarantee=draw(counts), budget=draw(st.integers(0, cap)), cap=cap
    )
    n = draw(st.integers(1, 20))
    return n, n + draw(st.integers(0, 40)), draw(counts), draw(counts), quota


@given(grants())
def test_a_grant_is_admit_count_of_the_block(state: tuple[int, int, int, int, Quota]) -> None:
    n, want, used, total, quota = state
    k, reason = grant_count(n, want, used, total, quota)
    assert k == admit_count(want, used, total, quota)[0]
    if k >= n:
        assert reason is Reason.ADMITTED
    else:  # the reason for the n at hand is the one admit_count gives them
        assert (k, reason) == admit_count(n, used, total, quota)
    if k:  # a block never passes a limit: the hard cap holds whatever the block size
        assert used + k <= quota.limit
        assert total + k <= quota.cap


def test_a_lease_is_cut_when_the_quota_falls() -> None:
    quota = Quota(limit=50, guarantee=10, budget=80, cap=100)
    lease = Lease()
    lease.granted(0.0, 7, 1, quota, 1, 20, used=30, total=60)  # 19 left; the store says 30
    assert lease.usable(7, 1, quota) == 19
    lower = Quota(limit=35, guarantee=10, budget=80, cap=100)
    # 30 - 19 = 11 were spent or granted elsewhere; 35 - 11 = 24 would still fit: no cut.
    assert lease.usable(7, 2, lower) == 19
    lease.spend(9)  # 10 left
    lowest = Quota(limit=25, guarantee=10, budget=80, cap=100)
    # 30 - 10 = 20 counted; the new limit leaves 5.
    assert lease.usable(7, 3, lowest) == 5
    assert lease.usable(8, 3, lowest) == 0  # another window: the block is void


# -- gates over a shared store ----------------------------------------------------------


def test_leases_save_round_trips_and_admit_the_same(store: FakeStore) -> None:
    gate = Gate(policy(), background=False)
    plain = Gate(policy(lease=None, storage="memory://"), background=False)
    for second in range(4):
        demand = {"a": 35, "b": 25}
        assert offer([gate], second, demand) == offer([plain], second, demand) == demand
    stats = gate.snapshot()["pools"]["default"]["users"]
    assert stats["a"]["leased"] > 0
    decisions = 4 * 60
    # Without leases: one call a decision, plus the flushes. With them, far fewer.
    assert store.calls < decisions / 2
    gate.close()
    plain.close()


def test_a_flood_is_held_and_the_cap_never_passed(store: FakeStore) -> None:
    nodes = [Gate(policy(nodes=3), background=False) for _ in range(3)]
    for second in range(6):
        got = offer(nodes, second, {"a": 35, "b": 25, "c": 1000})
        granted = store.granted("default", second)
        assert sum(got.values()) <= granted <= 100  # the hard cap, across all nodes
        # Unspent leases at the window's end: under-admission, at most size - 1 a node
        # and User.
        assert granted - sum(got.values()) <= 3 * 3 * (8 - 1)
        if second >= 1:  # TM on: a and b keep what they ask, c gets about its share
            assert got["a"] >= 35 - 3 * (8 - 1)
            assert got["b"] >= 25 - 3 * (8 - 1)
            assert got["c"] <= 10 + (80 - 35 - 25)
    assert all(g.pool("default").governor.active for g in nodes)
    for gate in nodes:
        gate.close()


def test_offered_requests_from_leases_reach_the_governor(store: FakeStore) -> None:
    gate = Gate(policy(), background=False)
    offer([gate], 0, {"a": 35, "b": 25})
    gate.tick(now=1.0)
    assert store.offered[("default", 0)] == {"a": 35, "b": 25}
    assert gate.pool("default").governor.demand["a"] == pytest.approx(35, rel=0.01)
    gate.close()


def test_a_grant_carries_the_offered_requests_served_before_it(store: FakeStore) -> None:
    gate = Gate(policy(lease=LeasePolicy(size=4, horizon=1.0)), background=False)
    a = Identity("a", "4.1")
    for i in range(12):  # blocks of up to 4: grants at the 1st, 2nd, 6th and 10th request
        gate.decide(a, now=0.1 + i / 100)
    # No recomputation yet, yet the store has every request up to the last grant: the
    # ones served from a block went with the next grant, not with the next flush.
    assert store.offered[("default", 0)]["a"] == 10
    gate.tick(now=0.5)
    assert store.offered[("default", 0)]["a"] == 12
    gate.close()


def test_a_lower_capacity_cuts_leases_at_once(store: FakeStore) -> None:
    gate = Gate(policy(lease=LeasePolicy(size=50, horizon=1.0)), background=False)
    a = Identity("a", "4.1")
    for i in range(10):  # a steady 100 SR/s teaches the node the rate
        gate.decide(a, now=0.1 + i / 100)
    granted_before = store.granted("default", 0)
    assert granted_before > 10  # the node holds a block
    gate.set_capacity(10)  # cap 10 a window: everything granted so far is already over
    after = [gate.decide(a, now=0.3 + i / 1000) for i in range(20)]
    assert sum(d.admitted for d in after) == 0
    gate.close()


def test_leases_are_ignored_on_memory() -> None:
    gate = Gate(policy(storage="memory://"), background=False)
    offer([gate], 0, {"a": 35})
    assert gate.snapshot()["pools"]["default"]["users"]["a"]["leased"] == 0
    gate.close()


def test_a_store_fault_falls_back_without_leases(store: FakeStore) -> None:
    gate = Gate(policy(nodes=2), background=False)
    offer([gate], 0, {"a": 35})
    store.failing = True
    during = [gate.decide(Identity("a", "4.1"), now=1.5 + i / 1000) for i in range(10)]
    assert all(d.degraded for d in during)
    assert all(d.admitted == 1 for d in during)
    gate.close()


def test_async_gate_leases(store: FakeStore) -> None:
    import srtm.aio.gate

    class AsyncFake:
        uri = "redis://fake"

        def __init__(self) -> None:
            self.sync = FakeLedger(store)

        async def take(self, *args: object) -> Outcome:
            return self.sync.take(*args)  # type: ignore[arg-type]

        async def grant(self, *args: object) -> Outcome:
            return self.sync.grant(*args)  # type: ignore[arg-type]

        async def flush_and_read(self, *args: object) -> tuple[dict[str, int], dict[str, int]]:
            return self.sync.flush_and_read(*args)  # type: ignore[arg-type]

        async def close(self) -> None:
            pass

    async def run() -> tuple[int, int]:
        gate = AsyncGate(policy(), background=False)
        admitted = 0
        for s in range(2):
            await gate.tick(now=float(s))
            for i in range(60):
                d = await gate.decide(Identity("a" if i % 2 else "b", "4.1"), now=s + i / 60)
                admitted += d.admitted
        await gate.close()
        return admitted, store.calls

    mp = pytest.MonkeyPatch()
    mp.setattr(srtm.aio.gate, "ledger_for", lambda p: AsyncFake())
    try:
        admitted, calls = asyncio.run(run())
    finally:
        mp.undo()
    assert admitted == 120
    assert calls < 60


# -- the real script ---------------------------------------------------------------------


@pytest.mark.redis
@settings(max_examples=100, deadline=None)
@given(state=grants())
def test_lua_grant_is_the_twin_of_grant_count(
    redis_url: str, state: tuple[int, int, int, int, Quota]
) -> None:
    n, want, used, total, quota = state
    client = redis.Redis.from_url(redis_url)
    ledger = RedisLedger(redis_url)
    try:
        offered_key, admitted_key = redis_keys("twin-lease", 7)
        client.delete(offered_key, admitted_key)
        client.hset(admitted_key, mapping={"u": used, "": total})
        outcome = ledger.grant("twin-lease", 7, "u", n, want, quota, earlier=used % 5)
        k, reason = grant_count(n, want, used, total, quota)
        assert (outcome.admitted, outcome.reason) == (k, reason)
        assert (outcome.used, outcome.total) == (used + k, total + k)
        assert int(client.hget(offered_key, "u") or 0) == n + used % 5
    finally:
        ledger.close()
        client.close()


@pytest.mark.redis
def test_two_nodes_on_redis_hold_the_cap_with_fewer_round_trips(redis_db: str) -> None:
    client = redis.Redis.from_url(redis_db)

    def script_calls() -> int:
        stats = client.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_eval"))

    lease = LeasePolicy(size=8, horizon=0.1)
    nodes = [Gate(policy(storage=redis_db, lease=lease, nodes=2), background=False) for _ in "ab"]
    before = script_calls()
    decisions = 0
    for second in range(5):
        got = offer(nodes, second, {"a": 35, "b": 25, "c": 400})
        decisions += 35 + 25 + 400
        _, admitted_key = redis_keys("default", second)
        granted = int(client.hget(admitted_key, "") or 0)
        assert sum(got.values()) <= granted <= 100
        assert granted - sum(got.values()) <= 2 * 3 * (8 - 1)
        if second >= 1:
            assert got["c"] <= 10 + (80 - 35 - 25)
    calls = script_calls() - before
    # Admitted requests come from blocks; c's refusals come from the cache.
    assert calls < decisions / 4
    for gate in nodes:
        gate.close()
    client.close()


@pytest.mark.redis
def test_async_gate_on_redis_with_leases(redis_db: str) -> None:
    async def run() -> tuple[int, int]:
        gate = AsyncGate(policy(storage=redis_db), background=False)
        admitted = leased = 0
        for s in range(3):
            await gate.tick(now=float(s))
            for i in range(50):
                d = await gate.decide(Identity("a", "4.1"), now=s + i / 50)
                admitted += d.admitted
        leased = gate.snapshot()["pools"]["default"]["users"]["a"]["leased"]
        await gate.close()
        return admitted, leased

    admitted, leased = asyncio.run(run())
    assert admitted == 150
    assert leased > 75


def test_lease_bound_is_stated_in_requests() -> None:
    # The module's stated bound on unspent blocks, per node and User per window.
    lease = LeasePolicy(size=32, horizon=0.05)
    worst = max(lease.want(1, rate, 1.0) for rate in (1, 10, 100, 1_000, 1e6)) - 1
    assert worst == 31
    assert math.ceil(400 * 0.05) - 1 == lease.want(1, 400, 1.0) - 1
