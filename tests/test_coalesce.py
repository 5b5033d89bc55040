"""Coalesced store calls of the async gate, on a real redis-server.

Single-flight: concurrent requests of one User share one store call in flight.
Batching: concurrent requests of different Users go out as one script call, and decide
what the same calls one at a time would. Faults in the middle of either degrade every
waiter; none hangs. Counts are read from the server itself (``INFO commandstats`` and
the counter hashes), never from mocks.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srtm import Identity, TrafficPolicy
from srtm.aio.gate import AsyncGate
from srtm.aio.ledger import RedisLedger as AsyncRedisLedger
from srtm.aio.ledger import ledger_for as aio_ledger_for
from srtm.lease import LeasePolicy
from srtm.ledger import Quota, RedisLedger, redis_keys

if TYPE_CHECKING:
    from srtm.gate import Decision
    from tests.conftest import RedisServer, TcpProxy

pytestmark = pytest.mark.redis

#: Bound on a whole scenario: a hang fails the test instead of blocking the run.
HANG = 20.0


def policy(url: str, **kwargs: object) -> TrafficPolicy:
    # A 10 s window: every request of a test falls in one window of the virtual clock.
    fields: dict[str, object] = {
        "capacity": 10,
        "window": 10.0,
        "threshold": 0.8,
        "allocations": {"a": 2, "b": 2},
        "storage": url,
    }
    fields.update(kwargs)
    return TrafficPolicy(**fields)  # type: ignore[arg-type]


def script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_eval"))


def stored(client: redis.Redis, window: int, which: int, field: str) -> int:
    return int(client.hget(redis_keys("default", window)[which], field) or 0)


async def together(gate: AsyncGate, who: list[str], now: float) -> list[Decision]:
    """Decide one request per name, all at once (one task each), within ``HANG``."""
    tasks = [gate.decide(Identity(u, "4.1"), now=now + i / 1e6) for i, u in enumerate(who)]
    return await asyncio.wait_for(asyncio.gather(*tasks), HANG)


def test_a_refused_users_concurrent_requests_reach_the_store_once(redis_db: str) -> None:
    """32 concurrent requests of a User over its limit: one script call, one offered."""
    client = redis.Redis.from_url(redis_db)

    async def run() -> tuple[int, int, list[Decision]]:
        # Another node has taken c past its limit: this node does not know it yet.
        other = AsyncGate(policy(redis_db, capacity=100), background=False)
        over = await other.decide(Identity("c", "4.1"), 1000, now=1.0)
        assert 0 < over.admitted < 1000  # c is refused past the budget
        await other.close()
        gate = AsyncGate(policy(redis_db, capacity=100), background=False)
        await gate.decide(Identity("w", "4.1"), now=1.5)  # scripts loaded
        before, offered = script_calls(client), stored(client, 0, 0, "c")
        got = await together(gate, ["c"] * 32, now=2.0)
        calls, offered_after = script_calls(client) - before, stored(client, 0, 0, "c")
        await gate.close()
        return calls, offered_after - offered, got

    calls, offered, got = asyncio.run(run())
    assert all(d.admitted == 0 and d.status in (429, 503) for d in got), got[:2]
    assert calls == 1  # one refusal reached the store; 31 waited for it
    assert offered == 1  # the other 31 are counted locally, carried by the next flush
    client.close()


def test_admitted_concurrent_requests_of_one_user_take_one_call_together(redis_db: str) -> None:
    """The first request's call, then one call for all 31 that waited for it."""
    client = redis.Redis.from_url(redis_db)

    async def run() -> tuple[int, list[Decision]]:
        gate = AsyncGate(policy(redis_db, capacity=1000), background=False)
        await gate.decide(Identity("w", "4.1"), now=0.5)  # scripts loaded
        before = script_calls(client)
        got = await together(gate, ["c"] * 32, now=1.0)
        calls = script_calls(client) - before
        await gate.close()
        return calls, got

    calls, got = asyncio.run(run())
    assert [d.admitted for d in got] == [1] * 32
    assert calls == 2
    assert stored(client, 0, 1, "c") == 32 == stored(client, 0, 0, "c")
    # Each saw the counts it would have seen alone: remaining falls by one per request.
    remaining = [d.remaining for d in got]
    assert remaining == sorted(remaining, reverse=True)
    assert len(set(remaining)) == 32
    client.close()


def test_different_users_share_one_script_call(redis_db: str) -> None:
    client = redis.Redis.from_url(redis_db)
    users = [f"u{i}" for i in range(32)]

    async def run() -> tuple[int, list[Decision]]:
        gate = AsyncGate(policy(redis_db, capacity=1000), background=False)
        await together(gate, ["w", "x", "y"], now=0.5)  # both scripts loaded
        before = script_calls(client)
        got = await together(gate, users, now=1.0)
        calls = script_calls(client) - before
        await gate.close()
        return calls, got

    calls, got = asyncio.run(run())
    assert all(d.admitted == 1 for d in got)
    assert calls <= 2  # the first goes out alone (the store was idle), the rest batched
    assert all(stored(client, 0, 1, u) == 1 for u in users)
    client.close()


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[str, int, int, Quota, int]]:
    entries = []
    for _ in range(draw(st.integers(1, 12))):
        cap = draw(st.integers(0, 30))
        quota = Quota(
            limit=draw(st.integers(0, 20)),
            guarantee=draw(st.integers(0, 8)),
            budget=draw(st.integers(0, cap)),
            cap=cap,
        )
        n = draw(st.integers(1, 4))
        want = n + draw(st.integers(0, 4))
        entries.append((draw(st.sampled_from("abcd")), n, want, quota, draw(st.integers(0, 3))))
    return entries


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=batches())
def test_a_batch_decides_what_the_same_calls_one_at_a_time_would(
    redis_url: str, entries: list[tuple[str, int, int, Quota, int]]
) -> None:
    """TAKE_MANY_SCRIPT is TAKE_SCRIPT in a loop: same outcomes, same counters."""
    client = redis.Redis.from_url(redis_url)
    client.delete(*redis_keys("batch", 3), *redis_keys("single", 3))
    one = RedisLedger(redis_url, window=10.0)
    many = aio_ledger_for(TrafficPolicy(capacity=10, window=10.0, storage=redis_url))
    assert isinstance(many, AsyncRedisLedger)

    async def batched() -> list[tuple[int, int, int, int]]:
        got = await many.grant_many("batch", 3, entries)
        await many.close()
        return [(o.admitted, int(o.reason), o.used, o.total) for o in got]

    try:
        alone = []
        for user, n, want, quota, earlier in entries:
            o = one.grant("single", 3, user, n, want, quota, earlier)
            alone.append((o.admitted, int(o.reason), o.used, o.total))
        assert asyncio.run(batched()) == alone
        for which in (0, 1):
            single = client.hgetall(redis_keys("single", 3)[which])
            assert client.hgetall(redis_keys("batch", 3)[which]) == single
            total = int(client.hget(redis_keys("batch", 3)[1], "") or 0)
            assert total <= max(q.cap for _, _, _, q, _ in entries) or total == 0
    finally:
        one.close()
        client.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    who=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=60),
    lease=st.booleans(),
)
def test_concurrent_decisions_keep_the_cap_and_the_quotas(
    redis_url: str, who: list[str], lease: bool
) -> None:
    """However requests interleave, the store never admits past the cap or a quota,
    every request gets its answer, and the admitted total is the one-at-a-time one."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    p = policy(redis_url, lease=LeasePolicy(size=4) if lease else None)

    async def run(concurrent: bool) -> list[Decision]:
        gate = AsyncGate(p, background=False)
        await gate.decide(Identity("a", "4.1"), now=0.5)
        await gate.tick(now=0.6)  # traffic management on: quotas per User
        if concurrent:
            got = await together(gate, who, now=1.0)
        else:
            got = [
                await gate.decide(Identity(u, "4.1"), now=1.0 + i / 1e6) for i, u in enumerate(who)
            ]
        await gate.close()
        return got

    try:
        together_got = asyncio.run(run(True))
        total = stored(client, 0, 1, "")
        per_user = {u: stored(client, 0, 1, u) for u in set(who)}
        client.flushdb()
        alone = asyncio.run(run(False))
        assert len(together_got) == len(who)
        assert total <= 100  # the hard cap: 10 SR/s over a 10 s window
        assert all(d.status in (200, 429, 503) for d in together_got)
        for u, n in per_user.items():  # no User past its limit (+1 for the warm-up of a)
            limit = max(d.limit for d in together_got + alone if d.user == u)
            assert n <= limit
        if not lease:  # with leases the blocks' sizes follow timing; without, exact
            assert sum(d.admitted for d in together_got) == sum(d.admitted for d in alone)
    finally:
        client.flushdb()
        client.close()


def test_a_store_cut_mid_batch_degrades_every_waiter(redis_proxy: TcpProxy) -> None:
    """The proxy cut while many Users' requests wait: each decides locally, none hangs."""
    users = [f"u{i % 8}" for i in range(64)]

    async def run() -> list[Decision]:
        gate = AsyncGate(policy(redis_proxy.url, capacity=1000, nodes=2), background=False)
        assert not (await gate.decide(Identity("w", "4.1"), now=0.5)).degraded
        redis_proxy.cut()
        got = await together(gate, users, now=1.0)
        await gate.close()
        return got

    got = asyncio.run(run())
    assert len(got) == 64
    assert all(d.degraded for d in got)
    assert all(d.status in (200, 429, 503) for d in got)
    assert sum(d.admitted for d in got) == 64  # a node's share (500) is far from spent


def test_a_killed_store_mid_flight_degrades_every_waiter(private_redis: RedisServer) -> None:
    """redis-server killed while one User's requests wait on its call in flight."""

    async def run() -> list[Decision]:
        gate = AsyncGate(policy(private_redis.url, capacity=1000, nodes=2), background=False)
        assert not (await gate.decide(Identity("w", "4.1"), now=0.5)).degraded
        tasks = [
            asyncio.ensure_future(gate.decide(Identity("c", "4.1"), now=1.0 + i / 1e6))
            for i in range(32)
        ]
        for _ in range(100):  # until one call is out and 31 wait for it
            if len(gate._flights.get(("default", "c"), [])) == 31:
                break
            await asyncio.sleep(0)
        private_redis.stop()
        got = await asyncio.wait_for(asyncio.gather(*tasks), HANG)
        await gate.close()
        return got

    got = asyncio.run(run())
    assert len(got) == 32
    assert all(d.status in (200, 429, 503) for d in got)
    assert sum(d.degraded for d in got) >= 31  # the call in flight may have been answered


def test_a_cancelled_leader_hands_its_waiters_on(redis_proxy: TcpProxy) -> None:
    """The request whose call is in flight goes away: the ones waiting still get answers."""

    async def run() -> list[Decision]:
        gate = AsyncGate(policy(redis_proxy.url, capacity=1000, nodes=2), background=False)
        await gate.decide(Identity("w", "4.1"), now=0.5)
        redis_proxy.cut()  # calls now wait out their timeout
        # Another User's call in flight first, so the leader's waits in a batch.
        other = asyncio.ensure_future(gate.decide(Identity("o", "4.1"), now=1.0))
        leader = asyncio.ensure_future(gate.decide(Identity("c", "4.1"), now=1.0))
        waiters = [
            asyncio.ensure_future(gate.decide(Identity("c", "4.1"), now=1.0 + i / 1e6))
            for i in range(1, 8)
        ]
        for _ in range(100):
            if len(gate._flights.get(("default", "c"), [])) == 7:
                break
            await asyncio.sleep(0)  # until all 7 wait on the leader's flight
        leader.cancel()
        got = await asyncio.wait_for(asyncio.gather(*waiters), HANG)
        assert leader.cancelled()
        assert (await other).degraded
        await gate.close()
        return got

    got = asyncio.run(run())
    assert len(got) == 7
    assert all(d.status in (200, 429, 503) for d in got)
