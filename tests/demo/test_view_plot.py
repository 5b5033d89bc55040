"""The live view, the plain lines and the plot, from a synthetic run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from srtm.demo import DemoConfig
from srtm.demo._gateway import Counts
from srtm.demo._plot import plot
from srtm.demo._view import Frame, Row, plain_line, render, seconds
from tests.demo.helpers import Run

if TYPE_CHECKING:
    from pathlib import Path

PNG = b"\x89PNG\r\n\x1a\n"


def a_frame(active: bool) -> Frame:
    cfg = DemoConfig()
    rows = tuple(
        Row(
            label=s.label,
            allocation=s.allocation,
            runaway=s.runaway,
            last=Counts(offered=600, admitted=66, refused_429=534)
            if s.runaway
            else Counts(offered=int(s.rate), admitted=int(s.rate)),
            refused_total=2000 if s.runaway else 0,
            waiting=9 if s.runaway else 0,
            limit=(66.0 if s.runaway else s.allocation) if active else None,
            p50=0.5 if s.runaway else 0.012,
            p95=2.0 if s.runaway else 0.040,
        )
        for s in cfg.suppliers
    )
    return Frame(
        t=12.3,
        window=11,
        active=active,
        rows=rows,
        good_p50=0.012,
        good_p95=0.04,
        log=((9.4, "traffic management engaged in pool 'default'"),),
    )


def text_of(active: bool) -> str:
    """The view in an 80-column terminal: every line fits."""
    console = Console(record=True, width=80, color_system=None)
    console.print(render(DemoConfig(), a_frame(active)))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    return text


def test_the_live_view_shows_the_state_and_every_user() -> None:
    text = text_of(active=True)
    assert "TRAFFIC MANAGEMENT ON" in text
    assert "D RUNS AMOK until 21 s" in text
    for header in ("offered", "admitted", "429/503", "so far", "limit", "queued", "top-ups ms"):
        assert header in text
    assert "534/0" in text  # D's refusals in the last window
    assert "500/2000" in text  # D's own top-ups
    assert "median 12 ms, p95 40 ms" in text
    assert "traffic management engaged" in text


def test_the_live_view_says_when_traffic_management_is_off() -> None:
    assert "traffic management off" in text_of(active=False)


def test_a_plain_line_per_window() -> None:
    line = plain_line(DemoConfig(), a_frame(active=True))
    assert line.startswith("[  11-12 s] TM ON  | admitted ")
    assert "D 600/66 (refused 534)" in line
    assert "top-ups p50 12 ms p95 40 ms" in line


def test_seconds_are_whole_when_they_can_be() -> None:
    assert seconds(9.0) == "9 s"
    assert seconds(2.4) == "2.4 s"


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    out = tmp_path / "demo.png"
    plot(Run().analyse(), out)
    data = out.read_bytes()
    assert data.startswith(PNG)
    assert len(data) > 20_000
