"""The simulator's engine and the middleware decide alike on the same requests.

The same traffic (a and b within their allocations, c, d and e flooding from t=2 s to
t=8 s, b briefly over its allocation) is offered per control period to the simulator's
:class:`GateEngine` (a Gate on the virtual-clock SimLedger, offers in aggregate, the
bulk path for offers it proves admitted) and, one HTTP request at a time in the same
order on the same fake clock, to the WSGI and ASGI middleware (MemoryLedger, ``limits``
storages). Every offer must get the same number admitted, the same refusal status and
the same Retry-After.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from srtm import TrafficPolicy
from srtm.middleware import ASGITrafficManager, WSGITrafficManager
from srtm.sim._engines import GateEngine, slice_order

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

POLICY = TrafficPolicy(capacity=100, threshold=0.8, allocations={"a": 40, "b": 30, "c": 6, "d": 4})
# b speaks an old DUIS (503, not 429); e has no allocation at all.
USERS = [("a", "4.1"), ("b", "3.2"), ("c", "4.1"), ("d", "4.1"), ("e", "4.1")]
SECONDS = 14
PERIODS = 4  # the policy's control period is a quarter window


def rates(t: float) -> dict[int, float]:
    """SR/s per User index at time t."""
    out = {0: 35.0, 1: 25.0}
    if 2 <= t < 8:
        out[2] = 400.0  # three floods at once: who goes first matters in their first window
        out[3] = 150.0
        out[4] = 90.0
    if 9 <= t < 11:
        out[1] = 60.0  # b over its allocation while the floods are over
    return out


@dataclass(frozen=True)
class Slice:
    index: int
    now: float
    users: list[int]
    counts: list[int]


def traffic() -> Iterator[Slice]:
    owed = [0.0] * len(USERS)
    for i in range(SECONDS * PERIODS):
        now = i / PERIODS
        users, counts = [], []
        for u, rate in sorted(rates(now).items()):
            owed[u] += rate / PERIODS
            n = int(owed[u])
            owed[u] -= n
            if n:
                users.append(u)
                counts.append(n)
        yield Slice(i, now, users, counts)


Outcome = tuple[int, int, int | None]  # (admitted, refusal status or 200, Retry-After)


def simulated() -> list[list[Outcome]]:
    engine = GateEngine(POLICY, USERS)
    out: list[list[Outcome]] = []
    for s in traffic():
        engine.tick(s.now)
        if engine.fits(s.users, s.counts, s.now):
            engine.admit(s.users, s.counts, s.now)
            out.append([(n, 200, None) for n in s.counts])
        else:
            verdicts = engine.decide(s.users, s.counts, s.now, s.index)
            out.append([(k, status, retry) for k, retry, _, status in verdicts])
    engine.close()
    assert engine.counted > 0
    assert engine.decisions > 0
    return out


def _single(results: list[tuple[int, int | None]], n: int) -> Outcome:
    statuses = [status for status, _ in results]
    admitted = statuses.count(200)
    # Admitted requests come first: once one is refused, the rest of the offer is too.
    assert statuses == [200] * admitted + statuses[admitted:]
    refused = {(status, retry) for status, retry in results[admitted:]}
    assert len(refused) <= 1
    if not refused:
        return (admitted, 200, None)
    status, retry = refused.pop()
    return (admitted, status, retry)


def through_wsgi() -> list[list[Outcome]]:
    clock = [0.0]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    manager = WSGITrafficManager(app, POLICY, clock=lambda: clock[0], background=False)
    out: list[list[Outcome]] = []
    for s in traffic():
        clock[0] = s.now
        manager.gate.tick(now=s.now)
        row: list[Outcome | None] = [None] * len(s.users)
        for i in slice_order(s.users, s.index):
            user, version = USERS[s.users[i]]
            results = []
            for _ in range(s.counts[i]):
                got: dict[str, Any] = {}

                def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
                    got["status"] = int(status.split()[0])  # noqa: B023
                    got["headers"] = dict(headers)  # noqa: B023

                environ = {
                    "REQUEST_METHOD": "POST",
                    "PATH_INFO": "/sr",
                    "HTTP_X_SERVICE_USER_ID": user,
                    "HTTP_X_DUIS_VERSION": version,
                    "wsgi.input": None,
                }
                manager(environ, start_response)
                retry = got["headers"].get("Retry-After")
                results.append((got["status"], None if retry is None else int(retry)))
            row[i] = _single(results, s.counts[i])
        out.append([r for r in row if r is not None])
    manager.close()
    return out


async def through_asgi() -> list[list[Outcome]]:
    clock = [0.0]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    manager = ASGITrafficManager(app, POLICY, clock=lambda: clock[0], background=False)
    out: list[list[Outcome]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    for s in traffic():
        clock[0] = s.now
        await manager.gate.tick(now=s.now)
        row: list[Outcome | None] = [None] * len(s.users)
        for i in slice_order(s.users, s.index):
            user, version = USERS[s.users[i]]
            results = []
            for _ in range(s.counts[i]):
                sent: list[dict[str, Any]] = []

                async def send(message: dict[str, Any]) -> None:
                    sent.append(message)  # noqa: B023

                scope = {
                    "type": "http",
                    "method": "POST",
                    "path": "/sr",
                    "headers": [
                        (b"x-service-user-id", user.encode()),
                        (b"x-duis-version", version.encode()),
                    ],
                }
                await manager(scope, receive, send)
                start = sent[0]
                headers = {k.decode(): v.decode() for k, v in start["headers"]}
                retry = headers.get("retry-after")
                results.append((start["status"], None if retry is None else int(retry)))
            row[i] = _single(results, s.counts[i])
        out.append([r for r in row if r is not None])
    await manager.aclose()
    return out


@pytest.fixture(scope="module")
def sim() -> list[list[Outcome]]:
    return simulated()


def test_the_traffic_is_a_real_test(sim: list[list[Outcome]]) -> None:
    # The flood is refused (429 for c), b's excess too (503: DUIS 3.2), and the rest goes.
    statuses = {status for row in sim for _, status, _ in row}
    assert statuses == {200, 429, 503}
    refused = sum(n - k for s, row in zip(traffic(), sim, strict=True)
                  for n, (k, _, _) in zip(s.counts, row, strict=True))  # fmt: skip
    assert refused > 1000


def test_simulated_ticks_and_wsgi_middleware_agree(sim: list[list[Outcome]]) -> None:
    wsgi = through_wsgi()
    for s, a, b in zip(traffic(), sim, wsgi, strict=True):
        assert a == b, f"slice at t={s.now}: simulator {a}, WSGI middleware {b}"


async def test_simulated_ticks_and_asgi_middleware_agree(sim: list[list[Outcome]]) -> None:
    asgi = await through_asgi()
    for s, a, b in zip(traffic(), sim, asgi, strict=True):
        assert a == b, f"slice at t={s.now}: simulator {a}, ASGI middleware {b}"
