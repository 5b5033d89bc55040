"""The runaway's own HTTP/1.1 flood: keep-alive connections, a rate cap, statuses counted."""

from __future__ import annotations

import asyncio
import time

from srtm import TrafficPolicy
from srtm.demo._gateway import Gateway
from srtm.demo._runaway import flood

D = "90-B3-D5-1F-30-01-00-0D"


def test_the_flood_is_capped_counted_and_throttled() -> None:
    # A small gateway: alone, D may have at most the budget, 40 SR/s.
    gateway = Gateway(TrafficPolicy(capacity=50, threshold=0.8, allocations={D: 10}))
    url = gateway.start()
    try:
        start = time.time() + 0.2
        statuses = asyncio.run(flood(url, D, start, start + 1.5, 4, 300.0))
    finally:
        gateway.stop()
    sent = sum(statuses.values())
    # The cap allows 450 sends in 1.5 s (about that many here); a loaded 2-core machine may
    # manage fewer, but well over the 80 that two windows' budgets could admit.
    assert 150 <= sent <= 455, statuses
    assert set(statuses) == {"200", "429"}, statuses
    windows = int(start + 1.5) - int(start) + 1  # the 1 s windows the flood touched
    assert statuses["200"] <= 40 * windows, "at most the budget in each window"
    tally = [c for users in gateway.counts().values() for u, c in users.items() if u == D]
    assert sum(c.offered for c in tally) == sent
    assert sum(c.admitted for c in tally) == statuses["200"]
