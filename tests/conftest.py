"""Shared fixtures: a private redis-server, a TCP proxy a test can cut, and CI's rule
that nothing is skipped."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
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


class TcpProxy:
    """A TCP relay on loopback between a client and a server, which a test can cut.

    While cut, bytes in either direction are read and dropped and new connections are
    accepted but relay nothing: what a client sees of a partition (its commands time
    out), with no connection closed for it. :meth:`heal` lets traffic through again.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Drop everything from now on, in both directions."""
        self._open.clear()

    def heal(self) -> None:
        """Relay again."""
        self._open.set()

    def _accept(self) -> None:
        self._server.settimeout(0.2)
        while not self._closing.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.2)
        while not self._closing.is_set():
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if not self._open.is_set():
                continue  # cut: the bytes are lost, as on a partitioned link
            try:
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closing.set()
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def redis_proxy(private_redis: RedisServer) -> Iterator[TcpProxy]:
    """A :class:`TcpProxy` in front of this test's private redis-server."""
    proxy = TcpProxy(private_redis.port)
    try:
        yield proxy
    finally:
        proxy.close()


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
