"""End to end over real HTTP: the clients against gateways served by uvicorn in a thread.

Wall-clock tests. Lower bounds ("never earlier than Retry-After") are exact whatever the
machine's speed; the few upper bounds are relative (top-ups against bulk reads on the
same run) or wide, and say why.
"""

from __future__ import annotations

import email.utils
import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from srtm.client import (
    ClientEvent,
    OutcomeUnknownError,
    Priority,
    RetryPolicy,
    RetryScheduled,
    SRSettled,
)

from .helpers import (
    Facade,
    Reply,
    Request,
    ScriptApp,
    ThrottlingGateway,
    free_port,
    refusal,
    serve,
    sr,
)

pytestmark = pytest.mark.e2e

Make = Callable[..., Facade]


# ---------------------------------------------------------------------------------------
# The headline: top-ups submitted mid-stream overtake thousands of queued bulk reads


@dataclass
class TopUpRun:
    """What a run of the scenario measured."""

    bulk_ids: list[str]
    top_up_ids: list[str]
    pending_bulk_at: dict[str, int] = field(default_factory=dict)  # top-up -> bulk waiting
    latency: dict[str, float] = field(default_factory=dict)  # request id -> submit..settle
    outcomes: dict[str, int | None] = field(default_factory=dict)
    throttle_pauses: int = 0


def run_top_up_scenario(
    make_http_client: Make,
    base_url: str,
    *,
    n_bulk: int,
    top_up_batches: tuple[float, ...] = (0.25, 0.5),
    per_batch: int = 10,
    **client_kwargs: Any,
) -> TopUpRun:
    """Queue ``n_bulk`` bulk reads; when each fraction has settled, submit top-ups."""
    run = TopUpRun(
        bulk_ids=[f"bulk-{i:05d}" for i in range(n_bulk)],
        top_up_ids=[
            f"top-up-{b}-{i}" for b in range(len(top_up_batches)) for i in range(per_batch)
        ],
    )
    reached = [threading.Event() for _ in top_up_batches]
    settled_bulk = 0
    lock = threading.Lock()

    def on_event(event: ClientEvent) -> None:
        nonlocal settled_bulk
        if not isinstance(event, SRSettled):
            return
        with lock:
            run.latency[event.sr.request_id] = event.latency
            run.outcomes[event.sr.request_id] = event.status_code
            if event.priority == Priority.BULK:
                settled_bulk += 1
                for mark, fraction in zip(reached, top_up_batches, strict=True):
                    if settled_bulk >= fraction * n_bulk:
                        mark.set()

    client = make_http_client(base_url=base_url, on_event=on_event, **client_kwargs)
    futures = client.submit_many([sr("4.8.1", request_id=rid) for rid in run.bulk_ids])
    for b, mark in enumerate(reached):
        assert mark.wait(timeout=240), "the bulk reads stopped progressing"
        queued = client.stats().queued.get(Priority.BULK, 0)
        for i in range(per_batch):
            rid = f"top-up-{b}-{i}"
            run.pending_bulk_at[rid] = queued
            futures.append(client.submit(sr("2.2", request_id=rid)))
    for future in futures:
        assert future.result(timeout=240).status_code == 200
    run.throttle_pauses = client.stats().throttle_pauses
    client.close()  # drains (nothing left) and waits for the last hooks
    return run


def check_top_up_run(run: TopUpRun, admitted: list[str]) -> None:
    """Nothing lost or duplicated, and the top-ups went well before earlier bulk reads."""
    everything = run.bulk_ids + run.top_up_ids
    # Nothing lost: every SR ended in a 200, seen by the caller and by the back end.
    assert set(run.outcomes) == set(everything)
    assert all(status == 200 for status in run.outcomes.values())
    # Nothing duplicated: the back end processed each SR exactly once.
    counts = Counter(admitted)
    assert set(counts) == set(everything)
    assert max(counts.values()) == 1
    position = {rid: i for i, rid in enumerate(admitted)}
    bulk_positions = sorted(position[rid] for rid in run.bulk_ids)
    for rid in run.top_up_ids:
        # Bulk reads queued before this top-up and processed after it: nearly all of
        # those still waiting when it was submitted (at least half, a wide margin for
        # the sends already in flight and a pause in progress).
        overtaken = sum(p > position[rid] for p in bulk_positions)
        assert overtaken >= 0.5 * run.pending_bulk_at[rid], (rid, overtaken)
    top_up = statistics.median(run.latency[r] for r in run.top_up_ids)
    bulk = statistics.median(run.latency[r] for r in run.bulk_ids)
    # Relative, so a slow machine slows both: a top-up's typical wait is a small part of
    # a bulk read's.
    assert top_up < 0.25 * bulk, (top_up, bulk)


def test_top_ups_overtake_queued_bulk_reads_at_a_throttling_gateway(make_http_client: Make) -> None:
    gateway = ThrottlingGateway(limit=200, window=1.0)
    with serve(gateway.app, started=gateway.app.started) as url:
        run = run_top_up_scenario(
            make_http_client,
            url,
            n_bulk=2000,
            max_in_flight=8,
            follow_rate_limit=False,  # push past the limit: this run is about throttling
        )
    assert run.throttle_pauses >= 1  # the User really was throttled
    check_top_up_run(run, [a.request_id for a in gateway.admitted()])


# ---------------------------------------------------------------------------------------
# Retry-After over the wire: never earlier, both forms


def test_retry_after_seconds_over_the_wire(make_http_client: Make) -> None:
    async def handler(request: Request) -> Reply:
        if len(app.log) == 0:
            return refusal(user=request.user, retry_after=1, duis="4.1")
        return Reply(200)

    app = ScriptApp(handler)
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url)
        assert client.send(sr("2.2")).status_code == 200
        client.close()
    first, second = app.log
    assert first.status == 429
    assert second.request_id == first.request_id
    assert second.at - first.at >= 1.0


def test_retry_after_http_date_over_the_wire(make_http_client: Make) -> None:
    dates: list[float] = []

    async def handler(request: Request) -> Reply:
        if len(app.log) == 0:
            when = math.floor(time.time()) + 2
            dates.append(when)
            reply = refusal(user=request.user, retry_after=2, duis="4.1")
            reply.headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
            return reply
        return Reply(200)

    app = ScriptApp(handler)
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url)
        assert client.send(sr("2.2")).status_code == 200
        client.close()
    _, second = app.log
    assert second.wall >= dates[0]


# ---------------------------------------------------------------------------------------
# Jitter: many clients refused at the same instant do not return at the same instant


def test_clients_refused_together_come_back_spread_out(make_http_client: Make) -> None:
    n_clients = 30
    refused_at: dict[str, float] = {}
    returned_at: dict[str, float] = {}

    async def handler(request: Request) -> Reply:
        now = time.monotonic()
        if request.user not in refused_at:
            refused_at[request.user] = now
            return refusal(user=request.user, retry_after=1, duis="4.1")
        returned_at[request.user] = now
        return Reply(200)

    app = ScriptApp(handler)
    with serve(app, started=app.started) as url:
        clients = [
            make_http_client(base_url=url, user_id=f"user-{i:02d}") for i in range(n_clients)
        ]
        futures = [c.submit(sr("2.2")) for c in clients]
        assert all(f.result(timeout=60).status_code == 200 for f in futures)
        for c in clients:
            c.close()
    delays = [returned_at[u] - refused_at[u] for u in refused_at]
    assert min(delays) >= 1.0  # nobody early
    # Without jitter every delay would be 1 s plus a few ms; with it they spread over
    # the next second (uniform: sd 0.29 s).
    assert statistics.pstdev(delays) > 0.15
    slots = Counter(int(d / 0.1) for d in delays)
    assert max(slots.values()) <= 0.4 * n_clients


# ---------------------------------------------------------------------------------------
# Idempotency: processed, then the answer was lost


def holding_gateway() -> tuple[ScriptApp, list[str]]:
    """Processes every SR; the first answer is never sent (the client times out)."""
    processed: list[str] = []

    async def handler(request: Request) -> Reply | None:
        processed.append(request.request_id)
        if len(processed) == 1:
            while (await request.receive())["type"] != "http.disconnect":
                pass  # hold the answer until the client gives up on it
            return None
        return Reply(200)

    return ScriptApp(handler), processed


def test_a_top_up_processed_then_timed_out_is_not_sent_twice(make_http_client: Make) -> None:
    app, processed = holding_gateway()
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url, timeout=httpx.Timeout(10.0, read=0.5))
        with pytest.raises(OutcomeUnknownError) as caught:
            client.send(sr("2.2", request_id="top-up-7"))
        assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
        client.close()  # drains: had a retry been scheduled, it would go now
    assert processed == ["top-up-7"]


def test_a_safe_to_repeat_sr_is_sent_again_after_a_timeout(make_http_client: Make) -> None:
    app, processed = holding_gateway()
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url, timeout=httpx.Timeout(10.0, read=0.5))
        response = client.send(sr("4.18", request_id="balance-3", safe_to_repeat=True))
        client.close()
    assert response.status_code == 200
    assert processed == ["balance-3", "balance-3"]


# ---------------------------------------------------------------------------------------
# Connection refused: provably not processed, so retried until the gateway is up


def test_connection_refused_is_retried_until_the_gateway_comes_up(make_http_client: Make) -> None:
    port = free_port()
    first_retry = threading.Event()

    def on_event(event: ClientEvent) -> None:
        if isinstance(event, RetryScheduled):
            first_retry.set()

    async def handler(request: Request) -> Reply:
        return Reply(200)

    app = ScriptApp(handler)
    client = make_http_client(
        base_url=f"http://127.0.0.1:{port}",
        on_event=on_event,
        retry=RetryPolicy(backoff_initial=0.2, backoff_max=1.0),
    )
    future = client.submit(sr("2.2", request_id="top-up-9"))
    assert first_retry.wait(timeout=30)  # refused at least once: nothing listens yet
    with serve(app, port=port, started=app.started):
        assert future.result(timeout=60).status_code == 200
        client.close()
    assert [a.request_id for a in app.log] == ["top-up-9"]
    assert client.stats().attempts >= 2
