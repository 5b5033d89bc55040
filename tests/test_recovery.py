"""Recovery after a store fault: many concurrent failures, then the store answers again.

A private redis-server is frozen (SIGSTOP, or CLIENT PAUSE) while many requests decide
at once; each times out, but only the control loop probes, the delay doubling per failed
probe, so the gate is back on the store within about a second of it answering.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import threading
import time
from typing import TYPE_CHECKING

import pytest
import redis

from srtm import Gate, Identity, TrafficPolicy
from srtm.aio.gate import AsyncGate

if TYPE_CHECKING:
    from srtm.gate import Decision
    from tests.conftest import RedisServer

# Back on the store within this long of it answering: one probe delay at its ceiling
# (1 s) plus a control period (0.25 s) plus the probe, with room for a loaded machine.
BACK_WITHIN = 2.0


def policy(url: str) -> TrafficPolicy:
    return TrafficPolicy(capacity=10_000, allocations={"a": 100}, storage=url, nodes=2)


def durations(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The outage lengths the gate logged ("answers again after X s")."""
    return [float(m) for m in re.findall(r"answers again after (-?[\d.]+) s", caplog.text)]


def wait_until(condition: object, seconds: float) -> bool:
    """Poll ``condition()`` until true or ``seconds`` have passed (no event to wait on)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return bool(condition())  # type: ignore[operator]


@pytest.mark.redis
def test_sync_gate_back_soon_after_sigstop(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate(policy(private_redis.url))
    stop = threading.Event()
    statuses: set[int] = set()

    def flood() -> None:
        identity = Identity("a", "4.1")
        while not stop.is_set():
            statuses.add(gate.decide(identity).status)
            time.sleep(0.005)  # pacing the load generator

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(16)]
    assert private_redis.proc is not None
    pid = private_redis.proc.pid
    with caplog.at_level(logging.WARNING, logger="srtm.gate"):
        for thread in threads:
            thread.start()
        assert wait_until(lambda: gate.pool("default").live == 1, 5)
        os.kill(pid, signal.SIGSTOP)
        try:
            assert wait_until(lambda: gate.degraded_since is not None, 3)
            time.sleep(4.0)  # the store stays frozen while 16 threads keep deciding
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.time()
        back = wait_until(lambda: gate.degraded_since is None, 10)
        took = time.time() - resumed
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    gate.close()
    print(f"\nSIGSTOP 4 s, 16 threads: back on the store {took:.2f} s after SIGCONT")
    assert back
    assert took < BACK_WITHIN, took
    assert statuses <= {200, 429, 503}
    assert durations(caplog)
    assert min(durations(caplog)) >= 0


@pytest.mark.redis
def test_async_gate_back_soon_after_client_pause(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = redis.Redis.from_url(private_redis.url)

    async def run() -> tuple[float, float, set[int]]:
        gate = AsyncGate(policy(private_redis.url))
        stop = asyncio.Event()
        statuses: set[int] = set()

        async def flood() -> None:
            identity = Identity("a", "4.1")
            while not stop.is_set():
                statuses.add((await gate.decide(identity)).status)
                await asyncio.sleep(0.005)  # pacing the load generator

        async def until(condition: object, seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if condition():  # type: ignore[operator]
                    return True
                await asyncio.sleep(0.01)
            return bool(condition())  # type: ignore[operator]

        tasks = [asyncio.create_task(flood()) for _ in range(50)]
        assert await until(lambda: gate.pool("default").live == 1, 5)
        paused = time.time()
        admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")
        assert await until(lambda: gate.degraded_since is not None, 3)
        # A decision while degraded never waits on the store.
        started = time.monotonic()
        decision = await gate.decide(Identity("b", "4.1"))
        local = time.monotonic() - started
        assert decision.degraded
        answering = paused + 3.0
        assert await until(lambda: time.time() >= answering, 5)
        back = await until(lambda: gate.degraded_since is None, 10)
        took = time.time() - answering
        stop.set()
        await asyncio.gather(*tasks)
        await gate.close()
        assert back
        return took, local, statuses

    with caplog.at_level(logging.WARNING, logger="srtm.gate"):
        took, local, statuses = asyncio.run(run())
    admin.close()
    print(f"\nCLIENT PAUSE 3 s, 50 tasks: back on the store {took:.2f} s after it answered")
    assert took < BACK_WITHIN, took
    assert local < 0.1  # deciding locally is not a wait on the dead store
    assert statuses <= {200, 429, 503}
    assert durations(caplog)
    assert min(durations(caplog)) >= 0


@pytest.mark.redis
def test_the_request_that_meets_a_paused_store_waits_about_one_timeout(
    private_redis: RedisServer,
) -> None:
    """One socket timeout (0.25 s), then a local decision. The 1 s bound leaves room for
    a loaded machine; it fails if the timed-out command were retried (redis-py with
    ``retry_on_timeout``, or a Cluster client, would try four times)."""
    gate = Gate(policy(private_redis.url), background=False)
    assert not gate.decide(Identity("a", "4.1")).degraded
    admin = redis.Redis.from_url(private_redis.url)
    admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")
    started = time.monotonic()
    decision = gate.decide(Identity("a", "4.1"))
    took = time.monotonic() - started
    admin.close()
    gate.close()
    assert decision.degraded
    assert decision.admitted == 1
    assert took < 1.0, took


@pytest.mark.redis
def test_an_async_request_that_meets_a_paused_store_waits_about_one_timeout(
    private_redis: RedisServer,
) -> None:
    """The async gate bounds a whole store call by ``socket_timeout`` (not each read):
    one timeout, then a local decision, for the request and every one waiting on it."""

    async def run() -> tuple[list[Decision], float]:
        gate = AsyncGate(policy(private_redis.url), background=False)
        assert not (await gate.decide(Identity("a", "4.1"))).degraded
        admin = redis.Redis.from_url(private_redis.url)
        admin.execute_command("CLIENT", "PAUSE", 3000, "ALL")
        started = time.monotonic()
        got = await asyncio.wait_for(
            asyncio.gather(*(gate.decide(Identity(u, "4.1")) for u in ("a", "a", "b"))), 10
        )
        took = time.monotonic() - started
        admin.close()
        await gate.close()
        return list(got), took

    decisions, took = asyncio.run(run())
    assert all(d.degraded for d in decisions)
    assert [d.admitted for d in decisions] == [1, 1, 1]
    assert took < 1.0, took
