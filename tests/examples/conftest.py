"""Start an example as its docstring says, on a real server in a process of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

#: Small enough that a test's own loop of requests sets traffic management off
#: (budget 16 SR/s); the examples' allocations are shares of it (A 5, B 2 SR/s).
CAPACITY = 20


def example_env(**extra: str) -> dict[str, str]:
    """The environment an example runs in: this tree's srtm, a small capacity, ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["GATEWAY_CAPACITY"] = str(CAPACITY)
    env["PYTHON"] = sys.executable
    env.pop("SRTM_STORAGE", None)
    env.update(extra)
    return env


@dataclass
class Running:
    """An example's server process: its URL(s), and what it wrote so far."""

    proc: subprocess.Popen[bytes]
    urls: list[str]
    log_path: Path

    @property
    def url(self) -> str:
        return self.urls[0]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> str:
        """SIGTERM, as a process manager stops a server; its log once it has exited."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the example did not stop on SIGTERM:\n{self.log()}")
        return self.log()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def run_example(
    argv: list[str], ports: list[int], env: Mapping[str, str], timeout: float = 90.0
) -> Iterator[Running]:
    """Run ``argv`` in examples/ until every port listens; kill its process group after."""
    with tempfile.TemporaryDirectory(prefix="srtm-example-") as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=EXAMPLES,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the shell script's too
            )
        running = Running(proc, [f"http://127.0.0.1:{p}" for p in ports], log_path)
        try:
            deadline = time.monotonic() + timeout  # imports on a loaded 2-core machine
            while not all(_listening(p) for p in ports):
                if proc.poll() is not None:
                    pytest.fail(f"{argv} exited with {proc.returncode}:\n{running.log()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"{argv} did not listen within {timeout:.0f} s:\n{running.log()}")
                time.sleep(0.1)  # polling a port: a server offers no event to wait on
            yield running
        finally:
            # The group this test started, by its id: a shell script's children too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def uvicorn(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]


@pytest.fixture
def port() -> int:
    return free_port()
