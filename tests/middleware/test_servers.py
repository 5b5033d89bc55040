"""Every common server keeps its connections when srtm refuses (issue 8, item 5).

Before the fix the middleware answered refusals without reading the request body, and
hypercorn then dropped the next request on that keep-alive connection (HTTP/1.1), or
failed streams with KeyErrors in its h2 protocol (HTTP/2). Here, for each server, a
flooder POSTs 2 KiB bodies on keep-alive connections and is refused hundreds of times
while a well-behaved User is admitted: no transport error for any client, every
well-behaved request a 200, and each client on one connection throughout.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from tests.middleware.servers import serve

BODY = b"<Request>" + b"x" * 2038 + b"</Request>"  # about an average SR: 2 KiB
FLOOD_HEADERS = {"X-Service-User-ID": "flood", "X-DUIS-Version": "4.1"}
GOOD_HEADERS = {"X-Service-User-ID": "good", "X-DUIS-Version": "4.1"}

# (server, HTTP/2 by prior knowledge)
MATRIX = [
    ("uvicorn", False),
    ("hypercorn", False),
    ("hypercorn-h2", True),
    ("daphne", False),
    ("gunicorn-sync", False),
    ("gunicorn-gthread", False),
    ("waitress", False),
]


@dataclass
class Seen:
    """What one client saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    connections: set[object] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        local = stream.get_extra_info("client_addr") if stream is not None else None
        with self.lock:
            self.statuses[response.status_code] += 1
            self.connections.add(local)


def client(base: str, http2: bool, headers: dict[str, str]) -> httpx.Client:
    """One connection per client, kept alive: what a Supplier's back end would hold."""
    return httpx.Client(
        base_url=f"http://{base}",
        headers=headers,
        http1=not http2,
        http2=http2,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=20,
    )


def flooder(
    base: str, http2: bool, stop: threading.Event, refused: threading.Event, seen: Seen
) -> None:
    with client(base, http2, FLOOD_HEADERS) as c:
        while not stop.is_set():
            try:
                response = c.post("/sr", content=BODY)
            except httpx.TransportError as exc:
                seen.errors.append(repr(exc))
                continue
            seen.add(response)
            if response.status_code == 429:
                refused.set()


def well_behaved(base: str, http2: bool, stop: threading.Event, seen: Seen) -> None:
    with client(base, http2, GOOD_HEADERS) as c:
        while not stop.wait(0.1):  # pacing at ~10 SR/s, well inside its allocation
            try:
                response = c.post("/sr", content=BODY)
            except httpx.TransportError as exc:
                seen.errors.append(repr(exc))
                continue
            seen.add(response)
            if response.status_code == 200:
                assert response.json() == {"user": "good", "bytes": len(BODY)}


@pytest.mark.e2e
@pytest.mark.parametrize(("server", "http2"), MATRIX, ids=[m[0] for m in MATRIX])
def test_refusals_keep_connections_usable(server: str, http2: bool) -> None:
    floods = [Seen() for _ in range(3)]
    good = Seen()
    stop, refused = threading.Event(), threading.Event()
    with serve(server) as base:
        threads = [
            threading.Thread(target=flooder, args=(base, http2, stop, refused, seen))
            for seen in floods
        ]
        for thread in threads:
            thread.start()
        # The well-behaved User starts once traffic management has engaged (the
        # flooder's first 429): before that, the first window's hard cap may refuse
        # anyone, which is the system's refusal, not a connection problem.
        engaged = refused.wait(30)
        good_thread = threading.Thread(target=well_behaved, args=(base, http2, stop, good))
        good_thread.start()
        stop.wait(2.0)  # the length of the experiment
        stop.set()
        for thread in [*threads, good_thread]:
            thread.join(timeout=60)
    assert engaged, f"the flooder was never throttled: {[f.statuses for f in floods]}"
    flood_total = sum((f.statuses for f in floods), Counter())
    errors = sum(len(f.errors) for f in [*floods, good])
    connections = sum(len(f.connections) for f in floods)
    # The figures docs/trust.md quotes (pytest -s shows them).
    print(
        f"\nmatrix: | {server} | {flood_total[429]} | {flood_total[200]} | {good.statuses[200]} "
        f"| {sum(good.statuses.values()) - good.statuses[200]} | {errors} | {connections} |"
    )
    assert [f.errors for f in floods] == [[], [], []]
    assert good.errors == []
    assert flood_total[429] >= 30, flood_total
    assert set(flood_total) <= {200, 429, 503}, flood_total
    assert good.statuses[200] >= 10, good.statuses
    assert set(good.statuses) == {200}, good.statuses
    # Each client kept its one connection through hundreds of refusals.
    for f in floods:
        assert len(f.connections) == 1, f.connections
    assert len(good.connections) == 1, good.connections
