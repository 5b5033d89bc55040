"""One control plane for every node: capacity and shadow mode set once, in force everywhere."""

from __future__ import annotations

import asyncio
import time

import pytest

from srtm import Gate, Identity, TrafficPolicy
from srtm._inspect import inspect_store
from srtm.aio.gate import AsyncGate


def policy(url: str, **kwargs: object) -> TrafficPolicy:
    base: dict[str, object] = {
        "capacity": 100,
        "threshold": 0.8,
        "allocations": {"a": 40},
        "storage": url,
        "nodes": 3,
    }
    return TrafficPolicy(**(base | kwargs))  # type: ignore[arg-type]


@pytest.mark.redis
def test_capacity_set_on_one_node_is_in_force_on_all_within_two_periods(redis_db: str) -> None:
    one, two = Gate(policy(redis_db), background=False), Gate(policy(redis_db), background=False)
    for gate in (one, two):
        gate.tick(now=0.0)
    one.set_capacity(50)
    assert one.pool("default").governor.capacity == 50  # in force here at once
    assert two.pool("default").governor.capacity == 100
    one.tick(now=0.25)  # the publisher's next control period publishes it...
    two.tick(now=0.25)  # ...and the other node's next one applies it
    assert two.pool("default").governor.capacity == 50
    # Applied as a capacity: the hard cap of a window is now 50 on the other node too.
    admitted = sum(
        two.decide(Identity("a", "4.1"), 10, now=1.1 + i / 100).admitted for i in range(10)
    )
    assert admitted == 40  # a's guarantee is under the new budget of 40
    # A node that starts later takes the published value at its first control period.
    three = Gate(policy(redis_db), background=False)
    assert three.pool("default").governor.capacity == 100
    three.tick(now=1.5)
    assert three.pool("default").governor.capacity == 50
    # Shadow mode, the same way.
    three.set_shadow(True)
    three.tick(now=1.75)
    for gate in (one, two):
        gate.tick(now=1.75)
        assert gate.pool("default").shadow
        assert gate.snapshot()["pools"]["default"]["shadow"] is True
    refused = two.decide(Identity("z", "4.1"), 1000, now=2.1)
    assert refused.shadow
    assert refused.allowed
    assert refused.status == 200
    for gate in (one, two, three):
        gate.close()


@pytest.mark.redis
def test_control_values_reach_running_nodes(redis_db: str) -> None:
    """The real clock and control threads: set on one, seen on the others well within
    a second (two control periods are 0.5 s; the bound allows for a loaded machine)."""
    nodes = [Gate(policy(redis_db)) for _ in range(2)]
    for gate in nodes:
        gate.start()
    nodes[0].set_capacity(30)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and nodes[1].pool("default").governor.capacity != 30:
        time.sleep(0.02)  # polling the other node's state: there is no event to wait on
    assert nodes[1].pool("default").governor.capacity == 30
    for gate in nodes:
        gate.close()


@pytest.mark.redis
def test_async_gates_share_the_control_plane(redis_db: str) -> None:
    async def run() -> tuple[float, bool]:
        one = AsyncGate(policy(redis_db), background=False)
        two = AsyncGate(policy(redis_db), background=False)
        await one.tick(now=0.0)
        one.set_capacity(20)
        one.set_shadow(True)
        await one.tick(now=0.25)
        await two.tick(now=0.25)
        got = two.pool("default").governor.capacity, two.pool("default").shadow
        assert inspect_store(redis_db)["pools"]["default"]["nodes"] == sorted([one.node, two.node])
        await two.close()  # a clean close leaves the live nodes at once
        assert inspect_store(redis_db)["pools"]["default"]["nodes"] == [one.node]
        await one.close()
        return got

    assert asyncio.run(run()) == (20, True)


def test_memory_pools_change_only_locally() -> None:
    gate = Gate(policy("memory://"), background=False)
    gate.set_capacity(10)
    gate.set_shadow(True)
    assert gate.pool("default").publish == {}
    with pytest.raises(ValueError, match="capacity"):
        gate.set_capacity(-1)
    gate.close()
