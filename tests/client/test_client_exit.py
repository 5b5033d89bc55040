"""Nothing lost at exit, and nothing sent is ever called unsent.

A process that submits thousands of SRs and exits without closing its client: every SR
reaches the gateway, or, past the exit timeout, is counted in a WARNING. An SR sent
whose answer never came (a timeout after sending) ends in ``OutcomeUnknownError`` and is
never among the SRs ``close()`` hands back as unsent. Real processes, real HTTP.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import httpx
import pytest

from srtm.client import OutcomeUnknownError, RetryPolicy

from .helpers import Facade, Reply, Request, ScriptApp, serve, sr

Make = Callable[..., Facade]

#: Submits N SRs and leaves without closing: the end of the script, or of asyncio.run.
SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys
    from srtm.client import AsyncServiceRequestClient, ServiceRequest, ServiceRequestClient

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    url, n, kind, exit_timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    transport = sys.argv[5]
    srs = [ServiceRequest(variant="4.8.1", body=b"<Read/>", path="/sr", request_id=f"sr-{i}")
           for i in range(n)]
    options = dict(base_url=url, user_id="90-B3-D5-1F-30-01-00-00", exit_timeout=exit_timeout,
                   transport=transport)
    if kind == "sync":
        client = ServiceRequestClient(**options)
        futures = [client.submit(s) for s in srs]
    else:
        async def main():
            client = AsyncServiceRequestClient(**options)
            futures = [client.submit(s) for s in srs]
        asyncio.run(main())
    print("main done", flush=True)
    """
)


def run_script(
    url: str, n: int, kind: str, exit_timeout: float, wire: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, url, str(n), kind, str(exit_timeout), wire],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def reported_unknown(stderr: str) -> set[str]:
    """The SRs a WARNING reported as sent and never clearly answered (at most 8: those
    in flight when asyncio.run cancelled the client's tasks)."""
    pattern = r"(\d+) SR\(s\) were sent and never clearly answered.*?resending\): (.*)"
    match = re.search(pattern, stderr)
    if match is None:
        return set()
    unknown = {i.strip() for i in match.group(2).split(",")}
    assert int(match.group(1)) == len(unknown) <= 8
    return unknown


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_unclosed_client_drains_at_exit(kind: str, wire: str) -> None:
    n = 3000

    async def handler(request: Request) -> Reply:
        return Reply(200)

    app = ScriptApp(handler)
    with serve(app, started=app.started) as url:
        done = run_script(url, n, kind, exit_timeout=120.0, wire=wire)
    assert done.returncode == 0, done.stderr
    assert "main done" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    received = [a.request_id for a in app.log]
    # asyncio.run cancels every task when main returns: an SR whose request was under way
    # at that instant ends as outcome unknown (reported), never resent or dropped.
    unknown = reported_unknown(done.stderr)
    assert len(received) == len(set(received))  # none sent twice
    assert set(received) | unknown == {f"sr-{i}" for i in range(n)}
    assert len(set(received)) >= n - len(unknown)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_past_the_exit_timeout_the_rest_is_cancelled_and_counted(kind: str, wire: str) -> None:
    n, admitted = 2000, 100

    async def handler(request: Request) -> Reply:
        if len(app.log) < admitted:
            return Reply(200)
        return Reply(429, {"Retry-After": "120"})  # the User must wait two minutes

    app = ScriptApp(handler)
    with serve(app, started=app.started) as url:
        done = run_script(url, n, kind, exit_timeout=3.0, wire=wire)
    assert done.returncode == 0, done.stderr
    processed = {a.request_id for a in app.log if a.status == 200}
    # 100 SRs in 3 s even on a loaded machine; the count below holds whatever it managed.
    assert 0 < len(processed) <= admitted
    cancelled = r"exit timeout \(3s\) has passed: (\d+) SR\(s\) not sent were cancelled"
    match = re.search(cancelled, done.stderr)
    assert match, done.stderr
    unknown = reported_unknown(done.stderr)
    assert not unknown & processed
    # Every SR accounted for, none silently: processed, cancelled (counted), or unknown.
    assert int(match.group(1)) == n - len(processed) - len(unknown)
    assert done.stderr.count("WARNING") >= 1


# ---------------------------------------------------------------------------------------
# Sent, no answer: outcome unknown, never "unsent"


def slow_gateway() -> tuple[ScriptApp, list[str]]:
    """Takes each SR in at once (it may be processed), and answers only after 2 s."""
    received: list[str] = []

    async def handler(request: Request) -> Reply:
        received.append(request.request_id)
        await asyncio.sleep(2.0)
        return Reply(200)

    return ScriptApp(handler), received


def until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll until ``condition()`` holds (a generous bound for a loaded machine)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.mark.parametrize("safe_to_repeat", [False, True])
def test_timeouts_after_sending_end_as_outcome_unknown_never_unsent(
    make_http_client: Make, safe_to_repeat: bool
) -> None:
    app, received = slow_gateway()
    with serve(app, started=app.started) as url:
        client = make_http_client(
            base_url=url,
            max_in_flight=4,
            timeout=httpx.Timeout(10.0, read=0.3),
            # A retried SR (safe to repeat) waits long enough for close() to find it.
            retry=RetryPolicy(backoff_initial=20.0, backoff_max=20.0),
        )
        srs = [sr("4.18", request_id=f"sr-{i}", safe_to_repeat=safe_to_repeat) for i in range(12)]
        futures = client.submit_many(srs)

        def first_four_timed_out() -> bool:
            stats = client.stats()
            return stats.errors + stats.retries >= 4

        until(first_four_timed_out)
        handed_back = client.close(cancel=True)
        unknown = {s.request_id for s in client.client.outcome_unknown}
    arrived = set(received)
    back = {s.request_id for s in handed_back}
    assert len(arrived) >= 4
    assert not arrived & back  # an SR the gateway received is never handed back as unsent
    assert arrived <= unknown  # each of them ends as outcome unknown
    assert arrived | back == {s.request_id for s in srs}  # and nothing is lost
    for s, future in zip(srs, futures, strict=True):
        if s.request_id in arrived:
            assert isinstance(future.exception(timeout=30), OutcomeUnknownError)
        else:
            assert future.cancelled()
