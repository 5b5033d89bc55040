"""Shared fixtures: a private redis-server, and CI's rule that nothing is skipped."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(reason: str) -> None:
    # In CI a backend test that cannot run is a failure, never a quiet skip.
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: backend tests may not be skipped)")
    pytest.skip(reason)


class RedisServer:
    """A private redis-server on a free port, for as long as the test needs it."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.workdir = tempfile.mkdtemp(prefix="srtm-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                _unavailable(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)  # polling a socket for readiness: there is no event to wait on

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def redis_binary() -> str:
    """Path of redis-server, or skip (fail in CI) when there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not on the PATH")
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: SRTM_REDIS_URL, or a private redis-server on a free port."""
    given = os.environ.get("SRTM_REDIS_URL")
    if given:
        yield given
        return
    server = RedisServer(redis_binary())
    server.start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may stop and start again."""
    server = RedisServer(redis_binary())
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_db(redis_url: str) -> Iterator[str]:
    """The Redis URL with the database flushed before and after the test."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield redis_url
    finally:
        client.flushdb()
        client.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test fails the run: a backend that did not run was not tested."""
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
