"""What the terminal shows while the demo runs: a live table, or one plain line a window."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from srtm.demo._gateway import Counts
from srtm.demo._measure import TOP_UP, percentile

if TYPE_CHECKING:
    from rich.console import RenderableType

    from srtm.demo._config import DemoConfig
    from srtm.demo._gateway import Gateway
    from srtm.demo._suppliers import Suppliers

__all__ = ["Frame", "frame", "plain_line", "render", "seconds"]

_LATENCY_SPAN = 5.0  # seconds of top-ups the live latency figures cover


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    allocation: float
    runaway: bool
    last: Counts  # the last complete window
    refused_total: int
    waiting: int  # SRs submitted to its client and not yet answered
    limit: float | None
    p50: float | None
    p95: float | None


@dataclass(frozen=True, slots=True)
class Frame:
    """The state of the run at one moment, as shown."""

    t: float  # seconds since the start
    window: int  # the last complete window (-1: none yet)
    active: bool
    rows: tuple[Row, ...]
    good_p50: float | None
    good_p95: float | None
    log: tuple[tuple[float, str], ...]


def frame(config: DemoConfig, gateway: Gateway, suppliers: Suppliers, start: float) -> Frame:
    """Read the gateway's tally and state and the Suppliers' latencies now."""
    now = time.time()
    w = config.window
    first = round(start / w)
    last = int(now // w) - 1  # the last complete window
    counts = gateway.counts()
    label_of = {s.user_id: s.label for s in config.suppliers}
    last_counts: dict[str, Counts] = {}
    refused: dict[str, int] = dict.fromkeys(label_of.values(), 0)
    for index, users in counts.items():
        if index < first:
            continue
        for user, c in users.items():
            label = label_of.get(user)
            if label is None:
                continue
            refused[label] += c.refused
            if index == last:
                last_counts[label] = c
    sample = gateway.samples[-1] if gateway.samples else None
    with suppliers.lock:
        # Top-ups answered in the last few seconds, however long ago they were submitted.
        recent = [
            x
            for x in suppliers.settled
            if x.variant == TOP_UP
            and x.outcome == "response"
            and x.submitted + x.latency >= now - _LATENCY_SPAN
        ]
        answered = Counter(x.label for x in suppliers.settled)
        waiting = {label: n - answered[label] for label, n in suppliers.submitted.items()}
    rows = []
    for s in config.suppliers:
        mine = [x.latency for x in recent if x.label == s.label]
        rows.append(
            Row(
                label=s.label,
                allocation=s.allocation,
                runaway=s.runaway,
                last=last_counts.get(s.label, Counts()),
                refused_total=refused[s.label],
                waiting=waiting.get(s.label, 0),
                limit=sample.limits.get(s.user_id) if sample and sample.active else None,
                p50=percentile(mine, 50),
                p95=percentile(mine, 95),
            )
        )
    good = [x.latency for x in recent if not config.by_label(x.label).runaway]
    return Frame(
        t=now - start,
        window=last - first,
        active=bool(sample and sample.active),
        rows=tuple(rows),
        good_p50=percentile(good, 50),
        good_p95=percentile(good, 95),
        log=tuple((t - start, message) for t, message in gateway.log[-4:]),
    )


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.0f}"


def seconds(t: float) -> str:
    """``9 s`` or ``3.6 s``."""
    return f"{t:.0f} s" if abs(t - round(t)) < 0.05 else f"{t:.1f} s"


def _phase(config: DemoConfig, t: float) -> str:
    runaway = config.runaway.label
    if t < config.amok_start:
        return f"calm: {runaway} runs amok at {seconds(config.amok_start)}"
    if t < config.amok_end:
        return f"{runaway} RUNS AMOK until {seconds(config.amok_end)}"
    return f"{runaway} has stopped flooding"


def render(config: DemoConfig, f: Frame) -> RenderableType:
    """The live view: a status line, a table per User, and the gate's recent log.

    It fits an 80-column terminal.
    """
    w = config.window
    tm = (
        Text(" TRAFFIC MANAGEMENT ON ", style="bold white on red")
        if f.active
        else Text(" traffic management off ", style="black on green")
    )
    status = Text.assemble(
        (f"t = {max(f.t, 0):4.1f} / {config.duration:.0f} s  ", "bold"),
        tm,
        "  ",
        (_phase(config, f.t), "bold red" if config.amok_start <= f.t < config.amok_end else ""),
    )
    table = Table(
        title=(
            f"Requests in the last complete window ({w:g} s); threshold "
            f"{config.budget * w:.0f}, capacity {config.capacity * w:.0f}"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_footer=True,
        pad_edge=False,
        padding=(0, 0),
    )
    total = sum(r.last.offered for r in f.rows), sum(r.last.admitted for r in f.rows)
    over = total[1] > config.capacity * w
    table.add_column("User", footer="total")
    table.add_column("alloc\nSR/s", justify="right")
    table.add_column("offered", justify="right", footer=str(total[0]))
    table.add_column(
        "admitted",
        justify="right",
        footer=Text(str(total[1]), style="bold red" if over else "bold"),
    )
    table.add_column("refused\n429/503", justify="right")
    table.add_column("refused\nso far", justify="right")
    table.add_column("limit\nTM on", justify="right")
    table.add_column("queued\nin client", justify="right")
    table.add_column("top-ups ms\np50/p95", justify="right")
    for r in f.rows:
        style = "bold red" if r.runaway else ""
        table.add_row(
            Text(r.label, style=style),
            f"{r.allocation:.0f}",
            Text(
                str(r.last.offered),
                style="bold red" if r.runaway and r.last.offered > r.allocation * w else "",
            ),
            str(r.last.admitted),
            f"{r.last.refused_429}/{r.last.refused_503}",
            str(r.refused_total),
            "—" if r.limit is None else f"{r.limit:.0f}",
            Text(str(r.waiting), style="bold red" if r.waiting > r.allocation * w else ""),
            f"{_ms(r.p50)}/{_ms(r.p95)}",
        )
    latency = Text.assemble(
        f"Well-behaved Users' top-ups answered in the last {_LATENCY_SPAN:.0f} s: median ",
        (_ms(f.good_p50) + " ms", "bold"),
        ", p95 ",
        (_ms(f.good_p95) + " ms", "bold"),
        ".",
    )
    log = Text("\n".join(f"{t:5.1f} s  {message}" for t, message in f.log) or "(nothing yet)")
    return Group(
        Panel(status, title="srtm demo", title_align="left"),
        table,
        latency,
        Panel(log, title="gateway log", title_align="left", style="dim"),
    )


def plain_line(config: DemoConfig, f: Frame) -> str:
    """One line for the window that just ended (no TTY, or ``--no-live``)."""
    parts = []
    for r in f.rows:
        cell = f"{r.label} {r.last.offered}/{r.last.admitted}"
        if r.last.refused:
            cell += f" (refused {r.last.refused})"
        parts.append(cell)
    admitted = sum(r.last.admitted for r in f.rows)
    span = f"{f.window * config.window:.0f}-{(f.window + 1) * config.window:.0f} s"
    capacity = config.capacity * config.window
    return (
        f"[{span:>9}] TM {'ON ' if f.active else 'off'} | admitted {admitted:3d}/{capacity:.0f} | "
        f"offered/admitted: {'  '.join(parts)} | "
        f"top-ups p50 {_ms(f.good_p50)} ms p95 {_ms(f.good_p95)} ms"
    )
