"""Every example in examples/, started as its docstring says on a real server."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import httpx
import pytest
import redis

from tests.conftest import free_port
from tests.examples.conftest import CAPACITY, EXAMPLES, example_env, run_example, uvicorn
from tests.examples.helpers import SR, SUPPLIER_A, SUPPLIER_B, check_gateway, headers

pytestmark = pytest.mark.e2e

#: Written by uvicorn once the app has answered lifespan.shutdown; srtm closes its gate
#: as that message passes, before the app answers it.
SHUTDOWN_DONE = "Application shutdown complete."
NO_LIFESPAN = "'lifespan' protocol appears unsupported"


@pytest.mark.parametrize("app", ["starlette_app:app", "fastapi_app:app"])
def test_asgi_example_on_uvicorn(app: str, port: int) -> None:
    with run_example(uvicorn(app, port), [port], example_env()) as server:
        check_gateway(server.url)
        log = server.stop()
    assert SHUTDOWN_DONE in log, log
    assert NO_LIFESPAN not in log, log


def test_flask_example_on_waitress(port: int) -> None:
    argv = [sys.executable, "-m", "waitress", f"--listen=127.0.0.1:{port}", "flask_app:app"]
    with run_example(argv, [port], example_env()) as server:
        check_gateway(server.url)


def test_django_wsgi_example_on_gunicorn(port: int) -> None:
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "django_gateway.wsgi",
    ]
    with run_example(argv, [port], example_env()) as server:
        check_gateway(server.url)


def test_django_asgi_example_on_uvicorn_closes_its_gate_at_shutdown(port: int) -> None:
    argv = [*uvicorn("django_gateway.asgi:application", port), "--lifespan", "on"]
    with run_example(argv, [port], example_env()) as server:
        check_gateway(server.url)
        log = server.stop()
    # Django alone does not speak lifespan (uvicorn would fail to start with
    # --lifespan on); the example answers it, so the shutdown reached srtm.
    assert "Application startup complete." in log, log
    assert SHUTDOWN_DONE in log, log


@pytest.mark.redis
def test_two_nodes_on_one_redis_enforce_one_allocation(redis_db: str) -> None:
    """examples/two_nodes.sh: two uvicorn nodes, one Redis, one global count.

    B floods both nodes at once, one loop per node. Each node alone would admit up to
    capacity (20) a window, 40 together; sharing one Redis they admit at most 20 a window
    together (the hard cap; traffic management holds B near the budget, 16). Measured:
    72 admitted in 5 windows on Redis; 156 when the same script runs on memory://.
    """
    ports = [free_port(), free_port()]
    env = example_env(SRTM_STORAGE=redis_db, NODE_A_PORT=str(ports[0]), NODE_B_PORT=str(ports[1]))
    with run_example(["sh", "two_nodes.sh"], ports, env) as nodes:
        for url in nodes.urls:
            with httpx.Client(base_url=url, timeout=30) as http:
                assert http.post("/sr", content=SR, headers=headers(SUPPLIER_A)).status_code == 200
                assert http.post("/sr", content=SR).status_code == 401
        tallies = [Tally(), Tally()]
        stop = threading.Event()
        threads = [
            threading.Thread(target=flood, args=(url, stop, tally))
            for url, tally in zip(nodes.urls, tallies, strict=True)
        ]
        started = time.time()
        for thread in threads:
            thread.start()
        stop.wait(4.0)  # the length of the experiment
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        ended = time.time()
        log = nodes.stop()
    windows = math.floor(ended) - math.floor(started) + 1  # 1 s windows touched
    offered = sum(t.offered for t in tallies)
    admitted = sum(t.admitted for t in tallies)
    # The test can only fail if the flood could have doubled the cap: more than 40 a window.
    assert offered > 2 * CAPACITY * windows, f"flood too slow to tell: {offered} in {windows} s"
    assert admitted <= CAPACITY * windows, (admitted, windows, tallies)
    # Both nodes admitted some of B and refused some: they really shared the count.
    for tally in tallies:
        assert tally.admitted > 0
        assert tally.refused > 0
        assert tally.retry_after_ok
    # Both nodes closed their gates on SIGTERM (the script passes it on to each).
    assert log.count(SHUTDOWN_DONE) == 2, log
    assert redis.Redis.from_url(redis_db).keys("srtm:*"), "the nodes kept no counts in Redis"


@dataclass
class Tally:
    offered: int = 0
    admitted: int = 0
    refused: int = 0
    retry_after_ok: bool = True


def flood(url: str, stop: threading.Event, tally: Tally) -> None:
    """B's runaway back end: SRs one after another until told to stop."""
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            response = http.post("/sr", content=SR, headers=headers(SUPPLIER_B))
            tally.offered += 1
            if response.status_code == 200:
                tally.admitted += 1
            else:
                tally.refused += 1
                retry_after = response.headers.get("Retry-After", "")
                if response.status_code not in (429, 503) or not retry_after.isdigit():
                    tally.retry_after_ok = False


def test_supplier_backend_honours_throttling_and_sends_the_top_up_first(port: int) -> None:
    """examples/supplier_backend.py against the Starlette example while B's identity floods.

    A runaway process of the same Supplier floods the gateway as B (bypassing the client,
    as in ``srtm demo``), so B is over its limit and the client's SRs are refused too: it
    must pause for Retry-After, send them again, and end every one with 200 once the
    flood stops. The top-up, sent after 30 bulk reads were queued, goes ahead of them.
    """
    with run_example(uvicorn("starlette_app:app", port), [port], example_env()) as gateway:
        stop = threading.Event()
        runaway = threading.Thread(target=flood, args=(gateway.url, stop, Tally()))
        runaway.start()
        try:
            supplier = subprocess.Popen(
                [sys.executable, "supplier_backend.py"],
                cwd=EXAMPLES,
                env=example_env(GATEWAY_URL=gateway.url, BULK_READS="30"),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert supplier.stdout is not None
            lines: list[str] = []
            for line in supplier.stdout:  # until the client has been throttled once
                lines.append(line.rstrip("\n"))
                if line.startswith("paused"):
                    break
        finally:
            stop.set()
            runaway.join(timeout=60)
        rest, _ = supplier.communicate(timeout=120)
        lines += rest.splitlines()
    output = "\n".join(lines)
    assert supplier.returncode == 0, output
    pauses = [re.fullmatch(r"paused ([\d.]+) s after a (\d+)", line) for line in lines]
    pauses_seen = [m for m in pauses if m is not None]
    assert pauses_seen, output
    for pause in pauses_seen:
        assert pause.group(2) in {"429", "503"}
        assert float(pause.group(1)) >= 1.0  # Retry-After is at least 1 s, and a floor
    top_up = re.search(r"^top-up: 200, answered ahead of (\d+) of the 30 reads$", output, re.M)
    assert top_up is not None, output
    assert int(top_up.group(1)) > 0
    assert "reads: 30 x 200" in output
