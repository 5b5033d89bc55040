"""Real servers for the matrix: uvicorn, hypercorn, daphne, gunicorn, waitress.

In-process where the server allows a clean start and stop from a thread (uvicorn,
hypercorn, waitress); as a subprocess where it owns the process (daphne's Twisted
reactor, gunicorn's arbiter). Each yields the base URL once the server accepts
connections.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.conftest import free_port
from tests.middleware.conftest import serve_asgi, serve_wsgi

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import IO

ROOT = Path(__file__).resolve().parents[2]


def wait_listening(
    port: int,
    proc: subprocess.Popen[bytes] | None = None,
    output: IO[bytes] | None = None,
    within: float = 30,
) -> None:
    """Poll until something accepts on ``port`` (a server offers no event to wait on)."""
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            said = ""
            if output is not None:
                output.seek(0)
                said = output.read().decode(errors="replace")
            raise AssertionError(f"the server exited with {proc.returncode}:\n{said}")
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port {port} after {within} s")
        time.sleep(0.05)


@contextmanager
def subprocess_server(
    args: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run a server command with this tree importable; yields host:port."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    # Output goes to a file: a pipe nobody reads fills with access-log lines (daphne
    # logs every request) and then blocks the server mid-response.
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=environment, stdout=output, stderr=output
        )
        try:
            wait_listening(port, proc, output)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextmanager
def hypercorn_server(app: Any) -> Iterator[str]:
    """hypercorn on its own asyncio loop in a thread (HTTP/1.1, and h2c by prior knowledge)."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve(app, config, shutdown_trigger=stop.wait))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_listening(port)
        yield f"127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=15)
        loop.close()


@contextmanager
def serve(server: str) -> Iterator[str]:
    """The matrix's apps (tests.middleware.apps) under ``server``; yields host:port."""
    from tests.middleware import apps

    port = free_port()
    if server == "uvicorn":
        with serve_asgi(apps.make_asgi()) as base:
            yield base.removeprefix("http://")
    elif server.startswith("hypercorn"):
        with hypercorn_server(apps.make_asgi()) as address:
            yield address
    elif server == "daphne":
        args = ["daphne", "-b", "127.0.0.1", "-p", str(port), "tests.middleware.apps:asgi"]
        with subprocess_server(args, port) as address:
            yield address
    elif server.startswith("gunicorn"):
        worker = server.partition("-")[2]
        args = ["gunicorn", "-w", "1", "-k", worker, "--threads", "8", "-b", f"127.0.0.1:{port}"]
        with subprocess_server([*args, "tests.middleware.apps:wsgi"], port) as address:
            yield address
    elif server == "waitress":
        with serve_wsgi(apps.make_wsgi()) as base:
            yield base.removeprefix("http://")
    else:
        raise ValueError(server)
