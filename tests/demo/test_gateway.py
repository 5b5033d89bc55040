"""The demo's gateway: uvicorn in a thread, every request tallied in the gate's window."""

from __future__ import annotations

import time

import httpx

from srtm.demo import DemoConfig
from srtm.demo._gateway import Gateway


def test_the_gateway_serves_counts_and_samples() -> None:
    cfg = DemoConfig()
    a = cfg.suppliers[0].user_id
    gateway = Gateway(cfg.policy())
    url = gateway.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        before = int(time.time() // cfg.window)
        with httpx.Client(base_url=url) as http:
            statuses = [
                http.post(
                    "/sr", content=b"<Request/>", headers={"X-Service-User-ID": a}
                ).status_code
                for _ in range(5)
            ]
            anonymous = http.post("/sr", content=b"<Request/>")
        after = int(time.time() // cfg.window)
    finally:
        gateway.stop()
    assert gateway.error is None
    assert statuses == [200] * 5
    assert anonymous.status_code == 401
    counts = gateway.counts()
    assert set(counts) <= set(range(before, after + 1))
    mine = [c for users in counts.values() for user, c in users.items() if user == a]
    assert sum(c.offered for c in mine) == sum(c.admitted for c in mine) == 5
    nobody = [c for users in counts.values() for user, c in users.items() if user == "?"]
    assert sum(c.other for c in nobody) == 1
    assert gateway.samples, "the sampler reads the gate at once"
    assert gateway.samples[-1].active is False
