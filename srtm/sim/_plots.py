"""The PNG plots of a result: with traffic management on the left, without on the right.

``overview.png``: admitted traffic stacked by User (the top few and "others") under the
capacity and threshold lines, with the offered total, for the whole run and the focus
span, and each User's offered and admitted rate on a log scale; traffic management's
active periods shaded. ``users.png``: every User's share of its guarantee delivered, and
the throttled Users' admitted over fair share. ``latency.png``: how long the priority
SRs (top-ups) waited in their clients, and the clients' backlogs by class.

Drawn with matplotlib's object API on the Agg canvas: no pyplot, no global state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, PercentFormatter

from srtm.sim._classes import class_name
from srtm.sim._metrics import clock
from srtm.sim._runner import LATENCY_BIN

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.axes import Axes

    from srtm.sim._api import Result
    from srtm.sim._runner import Run

__all__ = ["plot_all"]

TOP = 5  # Users drawn on their own; the rest are "others"
MAX_POINTS = 1500
CULPRIT = "#d62728"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
OTHERS = "#9a9a9a"
TM_ON = "#f2b134"
REFUSED = "#d62728"
TM_COLOR, FCFS_COLOR = "#1f77b4", "#d62728"
CLASS_COLORS = ["#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#7f7f7f", "#9467bd", "#8c564b"]
DPI = 110


def plot_all(result: Result, folder: Path) -> list[Path]:
    """Write the three PNGs into ``folder``; return their paths."""
    return [
        _save(_overview(result), folder / "overview.png"),
        _save(_users(result), folder / "users.png"),
        _save(_latency(result), folder / "latency.png"),
    ]


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI)
    return path


# -- helpers ------------------------------------------------------------------------------


def _hours(result: Result, windows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Scenario clock (hours) of window positions."""
    c = result.compiled
    return windows * c.window / c.scale / 3600.0


def _clock_axis(ax: Axes) -> None:
    ax.xaxis.set_major_formatter(FuncFormatter(lambda h, _: clock(h * 3600.0)[:5]))
    ax.grid(True, alpha=0.25, linewidth=0.6)


_NICE = (1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1800, 3600)


def _binning(lo: int, hi: int) -> int:
    """Windows per point: the smallest round number that keeps to MAX_POINTS points."""
    need = max(1, -(-(hi - lo) // MAX_POINTS))
    return next((n for n in _NICE if n >= need), need)


def _binned(values: np.ndarray[Any, Any], lo: int, hi: int, b: int) -> np.ndarray[Any, Any]:
    """Mean per bin of ``b`` windows along the last axis, over [lo, hi)."""
    span = values[..., lo:hi]
    n = span.shape[-1] // b * b
    if n == 0:
        return span.astype(np.float64)
    return np.asarray(span[..., :n].reshape(*span.shape[:-1], -1, b).mean(axis=-1))


def _centres(result: Result, lo: int, hi: int, b: int) -> np.ndarray[Any, Any]:
    n = (hi - lo) // b if (hi - lo) >= b else hi - lo
    return _hours(result, lo + (np.arange(n) + 0.5) * b)


def _groups(result: Result) -> list[tuple[str, list[int], str]]:
    """(label, Users, colour): culprits and the biggest Users in the focus, then others."""
    s = result.scenario
    lo, hi = result.focus
    offered = np.maximum(
        result.tm.offered[:, lo:hi].sum(axis=1), result.fcfs.offered[:, lo:hi].sum(axis=1)
    )
    order = sorted(
        range(len(s.users)), key=lambda u: (s.users[u].id not in s.culprits, -int(offered[u]))
    )
    top, rest = order[:TOP], order[TOP:]
    groups = []
    colours = iter(PALETTE)
    for u in top:
        user = s.users[u]
        culprit = user.id in s.culprits
        label = f"{user.label} (culprit)" if culprit else user.label
        groups.append((label, [u], CULPRIT if culprit else next(colours)))
    if rest:
        groups.append((f"{len(rest)} others", rest, OTHERS))
    return groups


def _periods(mask: np.ndarray[Any, Any]) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _shade(ax: Axes, result: Result, run: Run, lo: int, hi: int) -> None:
    if run.mode == "tm":
        mask, colour, alpha = run.active, TM_ON, 0.28
    else:
        mask, colour, alpha = run.offered.sum(axis=0) > run.admitted.sum(axis=0), REFUSED, 0.10
    for a, b in _periods(mask[lo:hi]):
        start, end = _hours(result, np.array([lo + a, lo + b]))
        ax.axvspan(start, end, color=colour, alpha=alpha, lw=0, zorder=0)


def _limits(ax: Axes, result: Result, run: Run, lo: int, hi: int, b: int) -> None:
    x = _centres(result, lo, hi, b)
    cap = _binned(run.capacity, lo, hi, b)
    threshold = result.scenario.policy.threshold
    ax.step(x, cap, where="mid", color="black", lw=1.3, ls="--")
    ax.step(x, cap * threshold, where="mid", color="black", lw=1.0, ls=":")


# -- overview -----------------------------------------------------------------------------


def _overview(result: Result) -> Figure:
    s, c = result.scenario, result.compiled
    fig = Figure(figsize=(15, 12.5), layout="constrained")
    axes = fig.subplots(3, 2, sharey="row")
    groups = _groups(result)
    cap = s.policy.capacity
    spans = [(0, c.windows), result.focus, result.focus]
    top = 1.3 * cap
    for col, run in enumerate((result.tm, result.fcfs)):
        for row in range(2):
            lo, hi = spans[row]
            b = _binning(lo, hi)
            ax = axes[row][col]
            x = _centres(result, lo, hi, b)
            stacks = [
                _binned(run.admitted[members].sum(axis=0), lo, hi, b) / c.window
                for _, members, _ in groups
            ]
            ax.stackplot(x, stacks, colors=[g[2] for g in groups], lw=0, zorder=2)
            offered = _binned(run.offered.sum(axis=0), lo, hi, b) / c.window
            ax.plot(x, np.minimum(offered, top * 0.995), color="black", lw=0.9)
            peak = float(offered.max()) if len(offered) else 0.0
            if peak > top:
                ax.annotate(
                    f"offered peaks at {peak:,.0f} SR/s",
                    xy=(float(x[int(offered.argmax())]), top * 0.97),
                    xytext=(6, -14),
                    textcoords="offset points",
                    fontsize=8.5,
                    arrowprops={"arrowstyle": "-", "lw": 0.6},
                )
            _limits(ax, result, run, lo, hi, b)
            _shade(ax, result, run, lo, hi)
            ax.set_ylim(0, top)
            ax.set_xlim(*_hours(result, np.array([lo, hi])))
            _clock_axis(ax)
            what = "whole run" if row == 0 else "focus"
            grain = f"{b * c.window / c.scale:g} s" if b > 1 or c.scale != 1 else "1 s"
            ax.set_title(f"{run.label}: {what}, mean per {grain}", fontsize=10.5)
            if col == 0:
                ax.set_ylabel("admitted (stacked) and offered, SR/s")
        lo, hi = spans[2]
        b = _binning(lo, hi)
        ax = axes[2][col]
        x = _centres(result, lo, hi, b)
        for _, members, colour in groups:
            admitted = _binned(run.admitted[members].sum(axis=0), lo, hi, b) / c.window
            offered = _binned(run.offered[members].sum(axis=0), lo, hi, b) / c.window
            ax.plot(x, np.where(offered > 0, offered, np.nan), color=colour, lw=0.9, ls="--")
            ax.plot(x, np.where(admitted > 0, admitted, np.nan), color=colour, lw=1.5)
        _limits(ax, result, run, lo, hi, b)
        _shade(ax, result, run, lo, hi)
        ax.set_yscale("log")
        ax.set_xlim(*_hours(result, np.array([lo, hi])))
        _clock_axis(ax)
        ax.set_title(f"{run.label}: each User, offered (dashed) and admitted", fontsize=10.5)
        if col == 0:
            ax.set_ylabel("SR/s (log)")
    handles = [Patch(color=g[2], label=g[0]) for g in groups]
    handles += [
        _line("black", "-", "offered (all Users)"),
        _line("black", "--", f"capacity ({cap:,.0f} SR/s)"),
        _line("black", ":", f"threshold ({s.policy.threshold:g} × capacity)"),
        Patch(color=TM_ON, alpha=0.4, label="traffic management on"),
        Patch(color=REFUSED, alpha=0.2, label="requests refused (FCFS)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=6, fontsize=9, frameon=False)
    fig.suptitle(_suptitle(result), fontsize=12.5, fontweight="bold")
    return fig


def _line(colour: str, style: str, label: str) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], color=colour, ls=style, lw=1.2, label=label)


def _suptitle(result: Result) -> str:
    c = result.compiled
    scale = f", time compressed {1 / c.scale:g}×" if c.scale != 1 else ""
    return f"{result.scenario.name}: {len(result.scenario.users)} Users{scale}"


# -- users --------------------------------------------------------------------------------


def _users(result: Result) -> Figure:
    s = result.scenario
    tm, fcfs = result.tm_figures.users, result.fcfs_figures.users
    order = sorted(range(len(s.users)), key=lambda u: -tm[u].allocation)
    labels = [tm[u].name.replace("Supplier ", "") for u in order]
    x = np.arange(len(order))
    fig = Figure(figsize=(15, 8.5), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    width = 0.42
    for offset, figs, colour, label in (
        (-width / 2, tm, TM_COLOR, "with traffic management"),
        (width / 2, fcfs, FCFS_COLOR, "without (FCFS)"),
    ):
        shares = [figs[u].focus_guarantee_share for u in order]
        values = [np.nan if v is None else v for v in shares]
        top.bar(x + offset, values, width, color=colour, label=label)
        ratios = [figs[u].fair_ratio for u in order]
        bottom.bar(x + offset, [np.nan if r is None else r for r in ratios], width, color=colour)
    for i, u in enumerate(order):
        if tm[u].culprit:
            for ax in (top, bottom):
                ax.axvspan(i - 0.5, i + 0.5, color=CULPRIT, alpha=0.12, lw=0)
    top.set_ylim(0, 1.05)
    top.yaxis.set_major_formatter(PercentFormatter(1.0))
    top.axhline(0.99, color="black", lw=0.8, ls=":")
    top.set_ylabel("guarantee delivered\n(focus span)")
    top.set_title(
        "Each User's share of min(offered, allocation) delivered, window by window "
        "(dotted: 99%; shaded: culprit)",
        fontsize=10.5,
    )
    fig.legend(
        handles=[
            Patch(color=TM_COLOR, label="with traffic management"),
            Patch(color=FCFS_COLOR, label="without (FCFS)"),
            Patch(color=CULPRIT, alpha=0.15, label="culprit"),
        ],
        loc="outside lower center",
        ncol=3,
        fontsize=9.5,
        frameon=False,
    )
    bottom.axhline(1.0, color="black", lw=0.8, ls=":")
    bottom.set_ylabel("admitted / fair share\n(throttled Users)")
    t, b = result.tm_figures, result.fcfs_figures
    bottom.set_title(
        "Throttled Users: admitted over their weighted max-min fair share where the "
        f"budget was contested (Jain: TM {_j(t.jain)}, FCFS {_j(b.jain)})",
        fontsize=10.5,
    )
    for ax in (top, bottom):
        ax.set_xticks(x, labels, rotation=90, fontsize=7.5)
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.grid(True, axis="y", alpha=0.25)
    fig.suptitle(f"{_suptitle(result)}: per User, by allocation", fontsize=12.5, fontweight="bold")
    return fig


def _grouped(values: np.ndarray[Any, Any], size: int, how: Any) -> np.ndarray[Any, Any]:
    n = -(-len(values) // size) * size
    padded = np.zeros(n, dtype=np.float64)
    padded[: len(values)] = values
    return np.asarray(how(padded.reshape(-1, size), axis=1), dtype=np.float64)


def _j(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


# -- latency ------------------------------------------------------------------------------


def _latency(result: Result) -> Figure:
    c = result.compiled
    lo, hi = result.focus
    fig = Figure(figsize=(15, 8.5), layout="constrained")
    waits, queues = fig.subplots(2, 1, sharex=True)
    b_lo = int(lo * c.window // LATENCY_BIN)
    b_hi = max(b_lo + 1, -(-int(hi * c.window) // int(LATENCY_BIN)))
    group = max(1, -(-(b_hi - b_lo) // 300))
    name = class_name(c.scenario.priority_class)
    for run, colour in ((result.tm, TM_COLOR), (result.fcfs, FCFS_COLOR)):
        count = _grouped(run.latency_count[b_lo:b_hi], group, np.sum)
        total = _grouped(run.latency_sum[b_lo:b_hi], group, np.sum)
        worst = _grouped(run.latency_max[b_lo:b_hi], group, np.max)
        starts = b_lo + np.arange(len(count)) * group
        x = (starts + group / 2) * LATENCY_BIN / c.scale / 3600
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        waits.plot(x, mean, color=colour, lw=1.8, label=f"{run.label}: mean")
        waits.plot(
            x, np.where(count > 0, worst, np.nan), color=colour, lw=0.9, ls="--",
            label=f"{run.label}: longest",
        )  # fmt: skip
    grain = group * LATENCY_BIN / c.scale
    waits.set_title(
        f"How long {name} SRs waited between their submission and their admission "
        f"(per {grain:g} s of the scenario's clock)",
        fontsize=10.5,
    )
    waits.set_ylabel(f"wait of {name} SRs\nin the clients (s)")
    waits.set_ylim(bottom=0)
    waits.legend(fontsize=9, loc="upper right")
    b = _binning(lo, hi)
    xs = _centres(result, lo, hi, b)
    drawn = False
    for k, cls in enumerate(c.classes):
        colour = CLASS_COLORS[k % len(CLASS_COLORS)]
        for run, style in ((result.tm, "-"), (result.fcfs, "--")):
            queued = _binned(run.backlog[k], lo, hi, b)
            if np.any(queued > 0):
                drawn = True
                queues.plot(
                    xs,
                    np.where(queued > 0, queued, np.nan),
                    color=colour,
                    ls=style,
                    lw=1.4,
                    label=f"{class_name(cls)}, {'TM' if run.mode == 'tm' else 'FCFS'}",
                )
    if drawn:
        queues.set_yscale("log")
        queues.legend(fontsize=8.5, ncol=len(c.classes), loc="upper right")
    else:
        queues.text(0.5, 0.5, "no SR ever waited in a client queue", transform=queues.transAxes,
                    ha="center", va="center", fontsize=11, color="#555555")  # fmt: skip
    queues.set_ylabel("SRs queued in the clients")
    queues.set_title(
        "Clients' backlogs by priority class (solid: with traffic management; dashed: FCFS)",
        fontsize=10.5,
    )
    for ax in (waits, queues):
        _clock_axis(ax)
        reduced = result.tm.capacity < c.scenario.policy.capacity
        for a, z in _periods(reduced[lo:hi]):
            ax.axvspan(
                *_hours(result, np.array([lo + a, lo + z])), color="#555555", alpha=0.12, lw=0
            )
    grey = " (grey: capacity reduced)" if reduced.any() else ""
    fig.suptitle(f"{_suptitle(result)}: priority SRs{grey}", fontsize=12.5, fontweight="bold")
    return fig
