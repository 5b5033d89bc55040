"""Against gateways that are not srtm: plain scripted uvicorn apps, real HTTP.

The real DCC gateway answers a throttled User before DUIS 4.1 with a bare 503 and
``Retry-After``, with no srtm header; other servers send fractional or repeated
``Retry-After`` values, several RateLimit policies, or the ``X-RateLimit-*`` triple.
Each test runs for both clients (``kind``). The client runs on a ``VirtualClock`` and
the server stamps arrivals with the same clock: the client moves it only when nothing
is in flight, so every wait is checked exactly, over a real socket, without sleeping.
"""

from __future__ import annotations

import email.utils
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from .helpers import Facade, Reply, Request, ScriptApp, serve, sr

if TYPE_CHECKING:
    from srtm.client import VirtualClock

Make = Callable[..., Facade]
#: The draft's (draft-ietf-httpapi-ratelimit-headers) multi-policy example, verbatim.
DRAFT_POLICY = '"burst";q=100;w=60, "daily";q=1000;w=86400'


def plain(
    clock: VirtualClock, answer: Callable[[int, Request], Reply]
) -> tuple[ScriptApp, list[int]]:
    """A plain gateway: ``answer(n, request)`` for the n-th request; nothing srtm."""
    counter = itertools.count()
    statuses: list[int] = []

    async def handler(request: Request) -> Reply:
        reply = answer(next(counter), request)
        statuses.append(reply.status)
        return reply

    return ScriptApp(handler, clock=clock.monotonic), statuses


def test_a_plain_503_with_retry_after_pauses_the_whole_user_and_retries(
    make_http_client: Make, clock: VirtualClock
) -> None:
    def answer(n: int, request: Request) -> Reply:
        if n == 0:
            return Reply(503, {"Retry-After": "2"}, b"Service Unavailable")
        return Reply(200)

    app, statuses = plain(clock, answer)
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url, clock=clock, duis_version="3.2", max_in_flight=1)
        futures = client.submit_many([sr("2.2", request_id="top-up")] + [sr("4.8.1")] * 4)
        assert [f.result(timeout=60).status_code for f in futures] == [200] * 5
        client.close()
    assert statuses == [503, 200, 200, 200, 200, 200]
    refused, *rest = app.log
    assert rest[0].request_id == refused.request_id == "top-up"  # requeued in its place
    # The whole User waited: nothing went before Retry-After, then everything went.
    assert min(a.at for a in rest) - refused.at >= 2.0
    assert client.stats().throttle_pauses == 1


def test_a_plain_503_without_retry_after_is_the_callers(
    make_http_client: Make, clock: VirtualClock
) -> None:
    app, statuses = plain(clock, lambda n, _: Reply(503 if n == 0 else 200))
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url, clock=clock, duis_version="3.2")
        assert client.send(sr("2.2")).status_code == 503  # ambiguous: not repeated
        client.close()
    assert statuses == [503]


def test_429_with_an_http_date_is_a_floor(make_http_client: Make, clock: VirtualClock) -> None:
    dates: list[float] = []

    def answer(n: int, request: Request) -> Reply:
        if n == 0:
            when = clock.time() + 7.0
            dates.append(when)
            return Reply(429, {"Retry-After": email.utils.formatdate(when, usegmt=True)})
        return Reply(200)

    app, statuses = plain(clock, answer)
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url, clock=clock)
        assert client.send(sr("2.2")).status_code == 200
        client.close()
    assert statuses == [429, 200]
    _, retried = app.log
    assert retried.at + (clock.time() - clock.monotonic()) >= dates[0]


@pytest.mark.parametrize(
    ("value", "floor"), [("1.5", 1.5), ("0.25", 0.25), ("2, 3", 3.0), ("3, 1", 3.0)]
)
def test_fractional_and_list_retry_after_are_never_early(
    make_http_client: Make, clock: VirtualClock, value: str, floor: float
) -> None:
    def answer(n: int, request: Request) -> Reply:
        return Reply(503, {"Retry-After": value}) if n == 0 else Reply(200)

    app, statuses = plain(clock, answer)
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url, clock=clock, duis_version="3.2")
        assert client.send(sr("2.2")).status_code == 200
        client.close()
    assert statuses == [503, 200]
    refused, retried = app.log
    assert retried.at - refused.at >= floor
    assert retried.at - refused.at < floor + 1.0 + 0.1 * floor  # the floor plus jitter


def test_the_drafts_multi_policy_example_paces_at_the_burst_rate(
    make_http_client: Make, clock: VirtualClock
) -> None:
    fields = {"RateLimit-Policy": DRAFT_POLICY, "RateLimit": '"daily";r=999;t=3600'}
    app, _ = plain(clock, lambda n, _: Reply(200, dict(fields)))
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url, clock=clock, pace_factor=1.0, max_in_flight=1)
        client.send(sr("2.2"))  # the first answer brings the fields
        futures = client.submit_many([sr("2.2") for _ in range(5)])
        assert all(f.result(timeout=60).status_code == 200 for f in futures)
        client.close()
    gaps = [b.at - a.at for a, b in itertools.pairwise(app.log)]
    # 100 per 60 s: one SR every 0.6 s, not one every 86.4 s (the daily quota's pace).
    assert len(gaps) == 5
    assert gaps[0] <= 0.6  # unpaced until the first answer said otherwise
    assert gaps[1:] == pytest.approx([0.6] * 4)
    assert client.stats().pace == pytest.approx(100 / 60)


def test_the_x_ratelimit_triple_holds_until_its_reset(
    make_http_client: Make, clock: VirtualClock
) -> None:
    def answer(n: int, request: Request) -> Reply:
        left = max(0, 2 - n)  # three allowed, then the window is spent for 20 s
        return Reply(
            200,
            {
                "X-RateLimit-Limit": "3",
                "X-RateLimit-Remaining": str(left),
                "X-RateLimit-Reset": "20",
            },
        )

    app, _ = plain(clock, answer)
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url, clock=clock, max_in_flight=1)
        futures = client.submit_many([sr("2.2") for _ in range(4)])
        assert all(f.result(timeout=60).status_code == 200 for f in futures)
        client.close()
    times = [a.at for a in app.log]
    assert times[:3] == [0.0, 0.0, 0.0]  # remaining 2, 1: no hold
    assert times[3] == pytest.approx(20.0)  # remaining 0: held until the reset
