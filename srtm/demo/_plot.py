"""The PNG of a run: what each User sent, what was admitted, and what top-ups waited."""

from __future__ import annotations

from typing import TYPE_CHECKING

from srtm.demo._measure import TOP_UP, percentile

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.axes import Axes

    from srtm.demo._measure import Report

__all__ = ["plot"]

_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
_RUNAWAY = "#d62728"
_TM = "#ffcc80"


def plot(report: Report, path: Path) -> None:
    """Write the three-panel figure of ``report`` to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cfg = report.config
    w = cfg.window
    n = len(report.windows)
    edges = [k * w for k in range(n + 1)]
    mids = [(k + 0.5) * w for k in range(n)]
    colour = {}
    others = iter(_COLOURS)
    for s in cfg.suppliers:
        colour[s.label] = _RUNAWAY if s.runaway else next(others)
    per = "SR/s" if w == 1 else f"SRs per {w:g} s window"
    runaway = cfg.runaway.label
    good = [s.label for s in cfg.well_behaved]

    fig, (ax_off, ax_adm, ax_lat) = plt.subplots(
        3,
        1,
        figsize=(12.5, 10.5),
        sharex=True,
        height_ratios=[1, 1.2, 1],
        layout="constrained",
    )

    def frame(ax: Axes, title: str) -> None:
        for a, b in report.intervals:
            ax.axvspan(a, b, color=_TM, alpha=0.4, lw=0, zorder=0)
        ax.axvspan(cfg.amok_start, cfg.amok_end, ymin=0.985, ymax=1, color=_RUNAWAY, lw=0)
        ax.grid(axis="y", color="#dddddd", lw=0.6)
        ax.set_xlim(0, n * w)
        ax.set_title(title, loc="left", fontsize=10.5)

    def levels(ax: Axes) -> None:
        ax.axhline(cfg.capacity, color="black", lw=1.2, zorder=1)
        ax.axhline(cfg.budget, color="black", lw=1, ls="--", zorder=1)

    # 1. Offered: what each User sent per window (log scale: the flood dwarfs the rest).
    for s in cfg.suppliers:
        ys = [max(win[s.label].offered / w, 0.5) for win in report.windows]
        name = f"{s.label}, allocation {s.allocation:.0f}" + (": runs amok" if s.runaway else "")
        ax_off.stairs(
            ys,
            edges,
            color=colour[s.label],
            lw=2.4 if s.runaway else 1.6,
            label=name,
            baseline=None,
        )
    levels(ax_off)
    for y, text in ((cfg.capacity, "capacity"), (cfg.budget, "threshold")):
        ax_off.annotate(
            text,
            (1, y),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3 if y == cfg.capacity else -3),
            textcoords="offset points",
            ha="right",
            va="bottom" if y == cfg.capacity else "top",
            fontsize=8,
        )
    ax_off.set_yscale("log")
    ax_off.set_ylabel(f"offered, {per}")
    frame(
        ax_off,
        f"What each User sent to the gateway, refusals included ({runaway} floods in "
        f"the red-marked span)",
    )
    ax_off.legend(
        fontsize=8.5, loc="upper left", bbox_to_anchor=(1.005, 1), title="User", title_fontsize=9
    )

    # 2. Admitted: stacked per User, against capacity and the threshold.
    bottom = [0.0] * n
    for s in cfg.suppliers:
        ys = [win[s.label].admitted / w for win in report.windows]
        ax_adm.bar(
            mids,
            ys,
            width=w * 0.92,
            bottom=bottom,
            color=colour[s.label],
            label=f"{s.label} admitted",
            zorder=2,
        )
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    levels(ax_adm)
    ax_adm.set_ylim(0, cfg.capacity * 1.12)
    ax_adm.set_ylabel(f"admitted, {per}")
    frame(ax_adm, "What the gateway admitted to the back end, stacked per User")
    handles, labels = ax_adm.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="black", lw=1.2),
        Line2D([], [], color="black", lw=1, ls="--"),
        Patch(color=_TM, alpha=0.6),
        Patch(color=_RUNAWAY),
    ]
    labels += [
        f"capacity {cfg.capacity:.0f} SR/s",
        f"threshold {cfg.threshold:.0%}: {cfg.budget:.0f} SR/s",
        "traffic management on",
        f"{runaway} running amok",
    ]
    ax_adm.legend(handles, labels, fontsize=8.5, loc="upper left", bbox_to_anchor=(1.005, 1))

    # 3. Top-up latency: each top-up a dot at its submission time; per-window p50 and p95.
    def topups(labels_: list[str]) -> list[tuple[float, float]]:
        return [
            (x.submitted - report.start, x.latency * 1000)
            for x in report.settled
            if x.label in labels_ and x.variant == TOP_UP and x.outcome == "response"
        ]

    for labels_, name, dot in (
        (good, f"{', '.join(good)}: each top-up", "#1f77b4"),
        ([runaway], f"{runaway}: each top-up (its own flood's refusals)", _RUNAWAY),
    ):
        pts = topups(labels_)
        ax_lat.scatter(
            [p[0] for p in pts],
            [max(p[1], 0.5) for p in pts],
            s=6,
            color=dot,
            alpha=0.4,
            lw=0,
            label=name,
            zorder=2,
        )
    pts = topups(good)
    p50s, p95s = [], []
    for k in range(n):
        lat = [ms for t, ms in pts if k * w <= t < (k + 1) * w]
        p50s.append(percentile(lat, 50))
        p95s.append(percentile(lat, 95))
    nan = float("nan")
    ax_lat.stairs(
        [nan if v is None else v for v in p95s],
        edges,
        color="#0b3d91",
        lw=1.2,
        ls="--",
        label=f"{', '.join(good)}: p95 per window",
        baseline=None,
        zorder=3,
    )
    ax_lat.stairs(
        [nan if v is None else v for v in p50s],
        edges,
        color="#0b3d91",
        lw=2,
        label=f"{', '.join(good)}: median per window",
        baseline=None,
        zorder=3,
    )
    ax_lat.axhline(1000, color="#555555", lw=1.1, ls=":", zorder=1)
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("top-up latency, ms")
    ax_lat.set_xlabel("seconds since the start")
    frame(
        ax_lat,
        "How long prepayment top-ups (SR 2.2) took from submission to answer, "
        "client queueing and pauses included",
    )
    handles, labels = ax_lat.get_legend_handles_labels()
    handles.append(Line2D([], [], color="#555555", lw=1.1, ls=":"))
    labels.append("1 s: the shortest Retry-After pause")
    ax_lat.legend(
        handles, labels, fontsize=8.5, loc="upper left", bbox_to_anchor=(1.005, 1), markerscale=2.5
    )

    fig.suptitle(
        report.verdict_short,
        fontsize=10.5,
        x=0.01,
        ha="left",
        multialignment="left",
        color="#1a7f37" if report.passed else _RUNAWAY,
    )
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
