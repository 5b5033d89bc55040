"""What a caller sees, the same for ServiceRequestClient and AsyncServiceRequestClient.

Every test here runs twice (``kind`` is sync or async) over httpx's MockTransport and
a virtual clock: the clients wait by moving the clock, so Retry-After, pacing and
backoff are checked exactly, with no wall-clock sleeps.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import itertools
import math
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from srtm.client import (
    AttemptsExhaustedError,
    ClientClosedError,
    ClientEvent,
    DeadlineExceededError,
    OutcomeUnknownError,
    RefusalRule,
    RetryAfterTooLongError,
    RetryBudgetExhaustedError,
    RetryPolicy,
    RetryScheduled,
    SRSettled,
    UserPaused,
    VirtualClock,
)

from .conftest import MockGateway, MockScript
from .helpers import Facade, sr

REFUSED = {"X-SRTM-Refused": "user-limit"}
Make = Callable[..., Facade]
Build = Callable[[MockScript], MockGateway]


def ok(_: int, __: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"<Response/>")


def refuse_first(retry_after: str, n_refused: int = 1, status: int = 429) -> MockScript:
    def script(n: int, _: httpx.Request) -> httpx.Response:
        if n < n_refused:
            return httpx.Response(status, headers={"Retry-After": retry_after, **REFUSED})
        return httpx.Response(200)

    return script


def paused_when_told(paused: threading.Event) -> Callable[[ClientEvent], None]:
    """A hook that sets ``paused`` once the retry after a refusal is scheduled."""

    def on_event(event: ClientEvent) -> None:
        if isinstance(event, RetryScheduled):
            paused.set()

    return on_event


# ---------------------------------------------------------------------------------------
# The request on the wire


def test_send_posts_the_sr_with_the_users_identity(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    gateway = mock_gateway(ok)
    client = make_client(
        transport=gateway.transport,
        clock=clock,
        user_id="90-B3-D5-1F-30-01-00-00",
        duis_version="4.1",
        base_url="http://gateway.test/duis",
    )
    response = client.send(sr("2.2", body=b"<Request/>", path="/sr", request_id="req-1"))
    assert response.status_code == 200
    assert response.content == b"<Response/>"
    ((_, request),) = gateway.arrivals
    assert request.method == "POST"
    assert request.url == "http://gateway.test/duis/sr"
    assert request.headers["X-Service-User-ID"] == "90-B3-D5-1F-30-01-00-00"
    assert request.headers["X-DUIS-Version"] == "4.1"
    assert request.headers["X-Request-ID"] == "req-1"
    assert request.headers["Content-Type"] == "application/xml"
    assert request.content == b"<Request/>"


def test_final_answers_are_the_callers_whatever_their_status(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    statuses = [200, 202, 400, 401, 404, 501]
    gateway = mock_gateway(lambda n, _: httpx.Response(statuses[n]))
    client = make_client(transport=gateway.transport, clock=clock, max_in_flight=1)
    got = [client.send(sr("2.2")).status_code for _ in statuses]
    assert got == statuses
    assert len(gateway.arrivals) == len(statuses)  # none repeated


# ---------------------------------------------------------------------------------------
# Retry-After: never earlier, both forms


@pytest.mark.parametrize("seconds", [1, 3, 17, 120])
def test_retry_after_seconds_is_honoured(
    make_client: Make, mock_gateway: Build, clock: VirtualClock, seconds: int
) -> None:
    gateway = mock_gateway(refuse_first(str(seconds)))
    client = make_client(transport=gateway.transport, clock=clock)
    assert client.send(sr("2.2")).status_code == 200
    refused_at, retried_at = gateway.times()
    assert retried_at - refused_at >= seconds
    assert retried_at - refused_at < seconds + max(1.0, 0.1 * seconds)  # only a little jitter
    assert len(set(gateway.ids())) == 1  # the same request ID each time


@pytest.mark.parametrize("seconds", [1, 5, 90])
def test_retry_after_http_date_is_honoured(
    make_client: Make, mock_gateway: Build, clock: VirtualClock, seconds: int
) -> None:
    dates: list[float] = []

    def script(n: int, _: httpx.Request) -> httpx.Response:
        if n == 0:
            when = math.floor(clock.time()) + seconds
            dates.append(when)
            value = email.utils.formatdate(when, usegmt=True)
            return httpx.Response(429, headers={"Retry-After": value, **REFUSED})
        return httpx.Response(200)

    clock.advance(0.25)  # a wall time that is not a whole second
    gateway = mock_gateway(script)
    client = make_client(transport=gateway.transport, clock=clock)
    assert client.send(sr("2.2")).status_code == 200
    _, retried_at = gateway.times()
    assert clock.time() - clock.monotonic() + retried_at >= dates[0]  # not before the date


@pytest.mark.parametrize("garbage", ["soon", "-5", "+2", "", "Tomorrow, 25 Dec"])
def test_unusable_retry_after_falls_back_to_backoff(
    make_client: Make, mock_gateway: Build, clock: VirtualClock, garbage: str
) -> None:
    gateway = mock_gateway(refuse_first(garbage, n_refused=3))
    client = make_client(
        transport=gateway.transport,
        clock=clock,
        retry=RetryPolicy(backoff_initial=0.5, backoff_max=30.0),
    )
    assert client.send(sr("2.2")).status_code == 200
    t = gateway.times()
    gaps = [b - a for a, b in itertools.pairwise(t)]
    ceilings = [0.5, 1.0, 2.0]  # full jitter under 0.5 * 2 ** (attempt - 1)
    assert all(0.0 <= g <= c for g, c in zip(gaps, ceilings, strict=True))


@pytest.mark.parametrize(("value", "floor"), [("1.5", 1.5), ("2, 3", 3.0), ("0.25", 0.25)])
def test_lenient_retry_after_is_never_early(
    make_client: Make, mock_gateway: Build, clock: VirtualClock, value: str, floor: float
) -> None:
    gateway = mock_gateway(refuse_first(value, n_refused=1))
    client = make_client(transport=gateway.transport, clock=clock)
    assert client.send(sr("2.2")).status_code == 200
    first, retried = gateway.times()
    assert retried - first >= floor


def test_a_refusal_pauses_every_sr_of_the_user(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    gateway = mock_gateway(refuse_first("4"))
    client = make_client(transport=gateway.transport, clock=clock, max_in_flight=1)
    futures = [client.submit(sr("4.6.1")) for _ in range(10)]
    assert all(f.result(timeout=60).status_code == 200 for f in futures)
    refused_at, *others = gateway.times()
    assert min(others) >= refused_at + 4  # nobody went during the pause


def test_a_top_up_submitted_during_the_pause_goes_before_older_bulk(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    handles: list[Any] = []
    client: Facade

    def on_event(event: ClientEvent) -> None:
        # The pause has just begun: a customer tops up now (from the client's own
        # thread or loop, as a back end's callback would).
        if isinstance(event, UserPaused) and not handles:
            handles.append(client.submit_here(sr("2.2", request_id="top-up")))

    gateway = mock_gateway(refuse_first("3"))
    client = make_client(
        transport=gateway.transport, clock=clock, on_event=on_event, max_in_flight=1
    )
    bulk = client.submit_many([sr("4.6.1", request_id=f"bulk-{i}") for i in range(5)])
    assert all(f.result(timeout=60).status_code == 200 for f in bulk)
    assert client.wrap(handles[0]).result(timeout=60).status_code == 200
    assert gateway.ids() == [
        "bulk-0",  # refused: the pause starts
        "top-up",  # submitted during the pause, sent first after it
        "bulk-0",  # the refused SR, back in its old place
        "bulk-1",
        "bulk-2",
        "bulk-3",
        "bulk-4",
    ]


def test_503_from_the_traffic_manager_is_retried_like_429(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    gateway = mock_gateway(refuse_first("2", status=503))
    client = make_client(transport=gateway.transport, clock=clock, duis_version="3.0")
    assert client.send(sr("2.2")).status_code == 200
    assert gateway.times()[1] - gateway.times()[0] >= 2


# ---------------------------------------------------------------------------------------
# Only what was provably not processed is retried


@pytest.mark.parametrize("status", [500, 502, 504])
def test_an_ambiguous_answer_is_not_repeated(
    make_client: Make, mock_gateway: Build, clock: VirtualClock, status: int
) -> None:
    gateway = mock_gateway(lambda n, _: httpx.Response(status if n == 0 else 200))
    client = make_client(transport=gateway.transport, clock=clock)
    assert client.send(sr("2.2")).status_code == status
    client.close()
    assert len(gateway.arrivals) == 1


def test_a_503_with_neither_retry_after_nor_the_mark_is_not_repeated(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    gateway = mock_gateway(lambda n, _: httpx.Response(503) if n == 0 else ok(n, _))
    client = make_client(transport=gateway.transport, clock=clock)
    assert client.send(sr("2.2")).status_code == 503
    client.close()
    assert len(gateway.arrivals) == 1


def test_a_plain_503_with_retry_after_is_a_refusal(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    """The real gateway before DUIS 4.1: a bare 503 + Retry-After, no srtm header."""
    gateway = mock_gateway(
        lambda n, _: httpx.Response(503, headers={"Retry-After": "2"}) if n == 0 else ok(n, _)
    )
    client = make_client(
        transport=gateway.transport, clock=clock, duis_version="3.0", max_in_flight=1
    )
    first = client.submit(sr("2.2"))
    rest = client.submit_many([sr("4.8.1") for _ in range(3)])
    assert first.result(timeout=60).status_code == 200
    assert all(f.result(timeout=60).status_code == 200 for f in rest)
    times = gateway.times()
    assert times[0] == 0.0
    assert min(times[1:]) >= 2.0  # the whole User waited
    assert gateway.ids()[1] == gateway.ids()[0]  # the refused SR went first, the same SR


def test_the_refusal_rule_is_configurable(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    # A gateway that says "not processed" with 503 and a header of its own, no Retry-After.
    rule = RefusalRule(markers=frozenset({"X-Gateway-Busy"}))
    gateway = mock_gateway(
        lambda n, _: httpx.Response(503, headers={"X-Gateway-Busy": "1"}) if n == 0 else ok(n, _)
    )
    client = make_client(transport=gateway.transport, clock=clock, retry=RetryPolicy(refusal=rule))
    assert client.send(sr("2.2")).status_code == 200
    assert len(gateway.arrivals) == 2


def test_a_timeout_after_sending_is_not_repeated(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    def script(n: int, request: httpx.Request) -> httpx.Response | Exception:
        # The gateway processed the top-up, then the answer was lost.
        return httpx.ReadTimeout("no answer", request=request) if n == 0 else ok(n, request)

    gateway = mock_gateway(script)
    client = make_client(transport=gateway.transport, clock=clock)
    with pytest.raises(OutcomeUnknownError) as caught:
        client.send(sr("2.2", request_id="top-up-1"))
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert caught.value.sr.request_id == "top-up-1"
    client.close()
    assert gateway.ids() == ["top-up-1"]  # sent once: never twice


def test_ambiguous_failures_are_repeated_when_safe(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    def script(n: int, request: httpx.Request) -> httpx.Response | Exception:
        if n == 0:
            return httpx.ReadTimeout("no answer", request=request)
        if n == 1:
            return httpx.Response(500)
        return ok(n, request)

    gateway = mock_gateway(script)
    client = make_client(transport=gateway.transport, clock=clock)
    response = client.send(sr("4.18", safe_to_repeat=True, request_id="read-1"))
    assert response.status_code == 200
    assert gateway.ids() == ["read-1"] * 3


def test_connection_refused_is_retried_with_the_same_request_id(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    def script(n: int, request: httpx.Request) -> httpx.Response | Exception:
        return httpx.ConnectError("refused", request=request) if n < 3 else ok(n, request)

    gateway = mock_gateway(script)
    client = make_client(transport=gateway.transport, clock=clock)
    assert client.send(sr("2.2", request_id="top-up-2")).status_code == 200
    assert gateway.ids() == ["top-up-2"] * 4


# ---------------------------------------------------------------------------------------
# Giving up, and saying why


def test_the_deadline_counts_the_coming_sleep(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    gateway = mock_gateway(refuse_first("30"))
    client = make_client(transport=gateway.transport, clock=clock)
    with pytest.raises(DeadlineExceededError) as caught:
        client.send(sr("2.2", deadline=10.0))
    assert caught.value.response is not None
    assert caught.value.response.status_code == 429
    assert clock.monotonic() < 1.0  # handed back at once, not after sleeping 30 s
    assert len(gateway.arrivals) == 1


def test_attempts_exhausted_carries_the_last_refusal(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    gateway = mock_gateway(refuse_first("1", n_refused=10**6))
    client = make_client(
        transport=gateway.transport, clock=clock, retry=RetryPolicy(max_attempts=4)
    )
    with pytest.raises(AttemptsExhaustedError) as caught:
        client.send(sr("2.2"))
    assert caught.value.attempts == 4
    assert caught.value.response is not None
    assert len(gateway.arrivals) == 4


def test_an_absurd_retry_after_is_capped_and_reported(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    gateway = mock_gateway(refuse_first("999999"))
    client = make_client(
        transport=gateway.transport,
        clock=clock,
        max_in_flight=1,
        retry=RetryPolicy(max_retry_after=120.0),
    )
    first = client.submit(sr("2.2"))
    second = client.submit(sr("2.2"))
    with pytest.raises(RetryAfterTooLongError) as caught:
        first.result(timeout=60)
    assert caught.value.retry_after == 999999.0
    assert caught.value.cap == 120.0
    assert second.result(timeout=60).status_code == 200
    refused_at, next_at = gateway.times()
    assert 120.0 <= next_at - refused_at < 133.0  # the cap, not eleven days, not earlier


def test_a_retry_budget_limits_traffic_in_an_outage(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    def down(n: int, request: httpx.Request) -> Exception:
        return httpx.ConnectError("refused", request=request)

    gateway = mock_gateway(down)
    client = make_client(
        transport=gateway.transport,
        clock=clock,
        retry=RetryPolicy(budget_burst=5.0, budget_per_second=0.0, budget_ratio=0.0),
    )
    futures = [client.submit(sr("2.2")) for _ in range(20)]
    errors = [f.exception(timeout=60) for f in futures]
    assert all(isinstance(e, RetryBudgetExhaustedError) for e in errors[5:] if e)
    assert sum(isinstance(e, RetryBudgetExhaustedError) for e in errors) >= 15
    assert len(gateway.arrivals) <= 20 + 5  # 20 first attempts, 5 retries, no more


# ---------------------------------------------------------------------------------------
# Pacing from the RateLimit fields: rarely throttled at all


def test_pacing_from_ratelimit_fields_avoids_refusals(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    limit = 10
    windows: dict[int, int] = {}

    def gateway_with_limit(n: int, _: httpx.Request) -> httpx.Response:
        now = clock.monotonic()
        window = int(now)
        used = windows.get(window, 0)
        fields = {"RateLimit-Policy": f'"p";q={limit};w=1'}
        if used >= limit:
            return httpx.Response(429, headers={"Retry-After": "1", **REFUSED, **fields})
        windows[window] = used + 1
        fields["RateLimit"] = f'"p";r={limit - used - 1};t=1'
        return httpx.Response(200, headers=fields)

    gateway = mock_gateway(gateway_with_limit)
    client = make_client(transport=gateway.transport, clock=clock, max_in_flight=1)
    futures = [client.submit(sr("2.2")) for _ in range(60)]
    assert all(f.result(timeout=60).status_code == 200 for f in futures)
    assert client.stats().throttle_pauses == 0
    assert max(windows.values()) <= limit
    t = gateway.times()
    gaps = [b - a for a, b in itertools.pairwise(t[1:])]  # from the first answer on
    assert min(gaps) >= 1 / (limit * 0.9) - 1e-9


def test_a_configured_rate_paces_before_any_answer(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    gateway = mock_gateway(ok)
    client = make_client(
        transport=gateway.transport, clock=clock, rate=4.0, pace_factor=1.0, max_in_flight=8
    )
    futures = [client.submit(sr("2.2")) for _ in range(5)]
    assert all(f.result(timeout=60).status_code == 200 for f in futures)
    assert gateway.times() == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


# ---------------------------------------------------------------------------------------
# Nothing lost: close drains, or cancels and hands back


def test_close_drains_by_default(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    gateway = mock_gateway(refuse_first("2", n_refused=3))
    client = make_client(transport=gateway.transport, clock=clock)
    futures = [client.submit(sr("4.6.1")) for _ in range(25)]
    assert client.close() == []
    assert all(f.done() for f in futures)
    assert all(f.result().status_code == 200 for f in futures)
    assert len({r.headers["x-request-id"] for _, r in gateway.arrivals}) == 25


def test_close_with_cancel_hands_back_what_was_not_sent(
    make_client: Make, mock_gateway: Build
) -> None:
    # Real time here: a 100 s pause that the test does not wait out.
    gateway = MockGateway(VirtualClock(), refuse_first("100"))
    paused = threading.Event()
    client = make_client(
        transport=gateway.transport, max_in_flight=1, on_event=paused_when_told(paused)
    )
    sent = client.submit(sr("4.6.1", request_id="sent-then-refused"))
    queued = [client.submit(sr("4.6.1", request_id=f"queued-{i}")) for i in range(5)]
    assert paused.wait(timeout=30)
    handed_back = client.close(cancel=True)
    assert [s.request_id for s in handed_back] == ["sent-then-refused"] + [
        f"queued-{i}" for i in range(5)
    ]
    for future in [sent, *queued]:
        with pytest.raises(concurrent.futures.CancelledError):
            future.result(timeout=10)
    assert gateway.ids() == ["sent-then-refused"]


def test_a_drain_timeout_cancels_the_rest(make_client: Make, mock_gateway: Build) -> None:
    gateway = MockGateway(VirtualClock(), refuse_first("100"))
    client = make_client(transport=gateway.transport, max_in_flight=1)
    futures = [client.submit(sr("4.6.1")) for _ in range(3)]
    handed_back = client.close(drain_timeout=0.2)
    assert len(handed_back) == 3
    assert all(f.done() for f in futures)


def test_submit_after_close_is_refused(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    client = make_client(transport=mock_gateway(ok).transport, clock=clock)
    client.close()
    with pytest.raises(ClientClosedError):
        client.submit(sr("2.2"))


def test_a_cancelled_handle_is_never_sent(make_client: Make, mock_gateway: Build) -> None:
    gateway = MockGateway(VirtualClock(), refuse_first("100"))
    paused, dropped = threading.Event(), threading.Event()

    def on_event(event: ClientEvent) -> None:
        if isinstance(event, RetryScheduled):
            paused.set()
        if isinstance(event, SRSettled) and event.outcome == "cancelled":
            dropped.set()

    client = make_client(transport=gateway.transport, max_in_flight=1, on_event=on_event)
    first = client.submit(sr("2.2", request_id="first"))
    doomed = client.submit(sr("4.6.1", request_id="doomed"))
    assert paused.wait(timeout=30)
    assert doomed.cancel()
    assert dropped.wait(timeout=30)  # the async client hears of it on its loop, a moment later
    stats = client.stats()
    assert stats.cancelled == 1
    assert stats.queued == {0: 1}  # the refused top-up waits; the bulk read is gone
    client.close(cancel=True)
    assert first.cancelled() or isinstance(first.exception(timeout=10), BaseException)
    assert gateway.ids() == ["first"]


# ---------------------------------------------------------------------------------------
# Observability


def test_hooks_see_pauses_retries_and_settlements(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    events: list[ClientEvent] = []
    gateway = mock_gateway(refuse_first("2"))
    client = make_client(transport=gateway.transport, clock=clock, on_event=events.append)
    client.send(sr("2.2"))
    client.close()
    kinds = [type(e) for e in events]
    assert kinds == [UserPaused, RetryScheduled, SRSettled]
    paused, retry, done = events
    assert isinstance(paused, UserPaused)
    assert paused.pause >= 2.0
    assert isinstance(retry, RetryScheduled)
    assert retry.attempt == 1
    assert retry.cause == "429 (user-limit)"
    assert isinstance(done, SRSettled)
    assert (done.outcome, done.status_code, done.attempts) == ("response", 200, 2)
    assert done.latency >= 2.0


def test_a_failing_hook_does_not_break_the_client(
    make_client: Make, mock_gateway: Build, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: ClientEvent) -> None:
        raise RuntimeError("hook bug")

    client = make_client(transport=mock_gateway(ok).transport, clock=clock, on_event=broken)
    assert client.send(sr("2.2")).status_code == 200
    assert client.send(sr("2.2")).status_code == 200
    client.close()  # hooks run after the handle resolves; closing waits for them
    assert caplog.text.count("on_event hook failed") == 2


def test_stats_count_what_happened(
    make_client: Make, mock_gateway: Build, clock: VirtualClock
) -> None:
    gateway = mock_gateway(refuse_first("1", n_refused=2))
    client = make_client(transport=gateway.transport, clock=clock, max_in_flight=1)
    futures = [client.submit(sr(v)) for v in ("2.2", "4.6.1", "4.6.1")]
    for f in futures:
        f.result(timeout=60)
    stats = client.stats()
    assert stats.submitted == 3
    assert stats.responses == 3
    assert stats.attempts == 5
    assert stats.retries == 2
    assert stats.throttle_pauses == 2
    assert stats.pending == 0
    assert set(stats.waited) == {0, 4}


def test_a_broken_dispatcher_fails_pending_srs_rather_than_losing_them(
    make_client: Make, mock_gateway: Build, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = MockGateway(VirtualClock(), refuse_first("100"))  # real time: the pause holds
    paused = threading.Event()
    client = make_client(
        transport=gateway.transport, max_in_flight=1, on_event=paused_when_told(paused)
    )
    futures = [client.submit(sr("4.6.1")) for _ in range(5)]
    assert paused.wait(timeout=30)

    core = client.client._core
    working = core.next_action

    def broken() -> Any:
        # Broken from the sixth submission on: the dispatcher may still be finishing the
        # refusal's round when this is installed, and must not break before it is woken.
        if core.stats().submitted < 6:
            return working()
        raise RuntimeError("a bug in the core")

    core.next_action = broken  # type: ignore[method-assign]
    futures.append(client.submit(sr("2.2")))  # wakes the dispatcher, which breaks
    for future in futures:
        with pytest.raises(RuntimeError, match="a bug in the core"):
            future.result(timeout=30)
    assert "dispatcher failed" in caplog.text
    with pytest.raises(ClientClosedError):
        client.submit(sr("2.2"))


def test_a_send_that_times_out_leaves_nothing_queued(mock_gateway: Build) -> None:
    from srtm.client import ServiceRequestClient

    gateway = MockGateway(VirtualClock(), refuse_first("100"))  # real time: the pause holds
    paused = threading.Event()
    with ServiceRequestClient(
        base_url="http://gateway.test",
        user_id="u",
        transport=gateway.transport,
        max_in_flight=1,
        on_event=paused_when_told(paused),
    ) as client:
        client.submit(sr("2.2", request_id="first"))
        assert paused.wait(timeout=30)
        with pytest.raises(TimeoutError):
            client.send(sr("4.6.1", request_id="impatient"), timeout=0.05)
        assert client.stats().queued == {0: 1}  # only the refused top-up still waits
        client.close(cancel=True)
    assert gateway.ids() == ["first"]
