"""Run the demo: start the gateway, the Suppliers and the runaway, show it, judge it."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live

from srtm.demo._gateway import Gateway
from srtm.demo._measure import analyse
from srtm.demo._process import child_env
from srtm.demo._suppliers import Suppliers
from srtm.demo._view import frame, plain_line, render, seconds

if TYPE_CHECKING:
    from collections.abc import Iterator

    from srtm.demo._config import DemoConfig
    from srtm.demo._measure import Report

__all__ = ["run_demo"]

_REFRESH = 0.25  # seconds between live refreshes


class _Capture(logging.Handler):
    """Keeps srtm's warnings (traffic management engaged/released...) for the live view."""

    def __init__(self, sink: list[tuple[float, str]]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append((record.created, record.getMessage().removeprefix("srtm: ")))


@contextlib.contextmanager
def _captured(sink: list[tuple[float, str]]) -> Iterator[None]:
    logger = logging.getLogger("srtm")
    handler = _Capture(sink)
    old = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # no stray lines through the live view
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = old


def _runaway_process(config: DemoConfig, url: str, start: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "srtm.demo._runaway",
            "--url",
            url,
            "--user",
            config.runaway.user_id,
            "--start",
            repr(start + config.amok_start),
            "--stop",
            repr(start + config.amok_end),
            "--connections",
            str(config.flood_connections),
            *(() if config.flood_rate is None else ("--rate", repr(config.flood_rate))),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def _intro(console: Console, config: DemoConfig, url: str) -> None:
    runaway = config.runaway
    cap = "" if config.flood_rate is None else f" (up to {config.flood_rate:.0f} SR/s)"
    users = ", ".join(
        f"{s.label} (allocation {s.allocation:.0f}, sends {s.rate:.0f})" for s in config.suppliers
    )
    console.print(
        f"[bold]srtm demo[/]: a gateway at {url} (uvicorn, ASGITrafficManager, memory:// "
        f"storage): capacity {config.capacity:.0f} SR/s, threshold {config.threshold:.0%}, so "
        f"traffic management engages at {config.budget:.0f} SR/s.\n"
        f"Suppliers, SR/s: {users}; each sends top-ups (2.2), price updates (1.2.1) and bulk "
        f"reads (4.8.1) through srtm.client.\n"
        f"[red]{runaway.label}[/] runs amok from {seconds(config.amok_start)} to "
        f"{seconds(config.amok_end)}: a broken back end floods bulk reads on "
        f"{config.flood_connections} connections{cap}, bypassing its client.",
        highlight=False,
        soft_wrap=not console.is_terminal,
    )


def run_demo(
    config: DemoConfig,
    *,
    out: Path | None = Path("srtm-demo.png"),
    json_path: Path | None = None,
    live: bool | None = None,
    console: Console | None = None,
) -> Report:
    """Run the demo as ``config`` says; show it live, write the plot and summary; judge it.

    ``live`` None: a live table when the console is a terminal, plain lines otherwise.
    Returns the report; ``report.passed`` is the verdict.
    """
    console = console if console is not None else Console()
    live = console.is_terminal if live is None else live
    began = time.monotonic()
    gateway = Gateway(config.policy())
    w = config.window
    runaway: subprocess.Popen[str] | None = None
    suppliers: Suppliers | None = None
    extra: dict[str, Any] = {}
    with _captured(gateway.log):
        try:
            url = gateway.start()
            # Start on a window boundary, so the run's seconds are the gate's windows, and
            # late enough for the Suppliers' and the runaway's processes to be ready.
            start = math.ceil((time.time() + 1.5) / w) * w
            runaway = _runaway_process(config, url, start)
            suppliers = Suppliers(config, url, start=start, stop=start + config.duration)
            suppliers.start()
            _intro(console, config, url)
            if live:
                _show_live(console, config, gateway, suppliers, start)
            else:
                _show_plain(console, config, gateway, suppliers, start)
            if not suppliers.join(timeout=30):
                raise RuntimeError("the Suppliers' clients did not finish within 30 s")
            if suppliers.error is not None:
                raise RuntimeError(f"a Supplier failed: {suppliers.error!r}") from suppliers.error
            stdout, stderr = runaway.communicate(timeout=15)
            if runaway.returncode != 0:
                raise RuntimeError(f"the runaway process failed:\n{stderr.strip()}")
            extra["runaway_client_statuses"] = json.loads(stdout.strip().splitlines()[-1])
        except BaseException:
            if suppliers is not None:
                suppliers.halt()
                suppliers.join(timeout=5)
            raise
        finally:
            if suppliers is not None:
                suppliers.close()
            if runaway is not None and runaway.poll() is None:
                runaway.kill()
                runaway.wait()
            gateway.stop()
    if gateway.error is not None:
        raise RuntimeError(f"the gateway failed: {gateway.error!r}") from gateway.error
    with suppliers.lock:
        report = analyse(
            config,
            start=start,
            counts=gateway.counts(),
            samples=list(gateway.samples),
            settled=list(suppliers.settled),
            submitted=dict(suppliers.submitted),
            unsettled=dict(suppliers.unsettled),
        )
    report.figures.update(extra)
    report.took = time.monotonic() - began
    _conclude(console, report, out, json_path)
    return report


def _show_live(
    console: Console, config: DemoConfig, gateway: Gateway, suppliers: Suppliers, start: float
) -> None:
    end = start + config.duration
    with Live(console=console, refresh_per_second=4, transient=False) as view:
        while (now := time.time()) < end + 0.05:
            view.update(render(config, frame(config, gateway, suppliers, start)))
            time.sleep(min(_REFRESH, max(0.01, end + 0.05 - now)))  # the next refresh
        view.update(render(config, frame(config, gateway, suppliers, start)))


def _show_plain(
    console: Console, config: DemoConfig, gateway: Gateway, suppliers: Suppliers, start: float
) -> None:
    w = config.window
    n = math.ceil(config.duration / w - 1e-9)
    for k in range(n):
        # Shortly after window k ends, report it (the last complete window).
        time.sleep(max(0.0, start + (k + 1) * w + 0.05 - time.time()))
        console.print(
            plain_line(config, frame(config, gateway, suppliers, start)),
            highlight=False,
            soft_wrap=True,
        )


def _conclude(console: Console, report: Report, out: Path | None, json_path: Path | None) -> None:
    wrap = not console.is_terminal  # a log file gets whole lines
    console.print()
    for check in report.checks:
        mark = "[green]ok  [/]" if check.passed else "[bold red]FAIL[/]"
        console.print(f"{mark} {check.name}: {check.detail}", highlight=False, soft_wrap=wrap)
    for note in report.notes:
        console.print(f"[yellow]note[/] {note}", highlight=False, soft_wrap=wrap)
    console.print()
    style = "bold green" if report.passed else "bold red"
    console.print(report.verdict, style=style, highlight=False, soft_wrap=wrap)
    if out is not None:
        from srtm.demo._plot import plot

        plot(report, out)
        console.print(f"plot: {out}", highlight=False)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_json(), indent=1) + "\n")
        console.print(f"summary: {json_path}", highlight=False)
    console.print(f"took {report.took:.1f} s", highlight=False)
