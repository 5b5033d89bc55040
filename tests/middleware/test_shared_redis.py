"""Two gateway nodes on one Redis enforce one global allocation, not two."""

from __future__ import annotations

import threading

import pytest

from srtm import TrafficPolicy
from srtm.middleware import ASGITrafficManager
from tests.middleware import load
from tests.middleware.conftest import serve_asgi
from tests.middleware.test_asgi import gateway_app


@pytest.mark.redis
@pytest.mark.e2e
def test_two_asgi_nodes_share_one_allocation(redis_db: str) -> None:
    policy = TrafficPolicy(
        capacity=100, threshold=0.8, allocations={"a": 40, "b": 30, "c": 10}, storage=redis_db
    )
    node_one = ASGITrafficManager(gateway_app(), policy)
    node_two = ASGITrafficManager(gateway_app(), policy)
    tallies = {"a": load.Tally(), "b": load.Tally(), "c": load.Tally()}
    stop = threading.Event()
    with serve_asgi(node_one) as one, serve_asgi(node_two) as two:
        threads = [
            threading.Thread(target=load.steady, args=(one, "a", 30.0, stop, tallies["a"])),
            threading.Thread(target=load.steady, args=(two, "b", 20.0, stop, tallies["b"])),
            # the flooder spreads itself over both nodes
            *(
                threading.Thread(target=load.flood, args=(base, "c", stop, tallies["c"], "4.1"))
                for base in (one, two, one, two)
            ),
        ]
        for thread in threads:
            thread.start()
        stop.wait(6.0)  # the length of the experiment
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    a, b, c = tallies["a"], tallies["b"], tallies["c"]
    start = min(a.sent_at[0], b.sent_at[0], c.sent_at[0])
    # One global fair share for c: 10 + (80 - 30 - 20) = 30 a window across both nodes.
    # Two separate allocations would let it have about 60 a second (180 in three). The
    # slack (one window's worth over three seconds) covers window edges and limits that
    # rise mid-window when a or b fall behind their pace on a loaded machine.
    per_second = load.per_second(c.admitted_at, start, 6)[2:5]
    assert sum(per_second) <= 3 * 30 + 40, per_second
    assert c.statuses[429] > 100
    for tally in (a, b):
        late_sent = [t for t in tally.sent_at if t - start >= 2]
        late_admitted = [t for t in tally.admitted_at if t - start >= 2]
        assert len(late_admitted) >= 0.97 * len(late_sent)
    # Both nodes saw c and both engaged traffic management.
    for node in (node_one, node_two):
        pool = node.gate.snapshot()["pools"]["default"]
        assert pool["active"]
        assert pool["users"]["c"]["offered"] > 0
