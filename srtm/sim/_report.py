"""What a result says, as rich tables for the terminal, markdown and JSON."""

from __future__ import annotations

import os
import platform
from typing import TYPE_CHECKING, Any

from srtm.sim._metrics import RunFigures, UserFigures, clock

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from rich.console import Console
    from rich.table import Table

    from srtm.sim._api import Result

__all__ = ["load_figures", "render", "summary", "table_markdown", "table_rows", "totals_rows"]

#: Users listed by name in the default table (culprits always are).
TOP = 10


def _short(x: int) -> str:
    """A count in at most six characters: 9,999 / 48.1k / 1.80M."""
    if abs(x) < 10_000:
        return f"{x:,}"
    if abs(x) < 1_000_000:
        return f"{x / 1e3:.1f}k"
    return f"{x / 1e6:.2f}M"


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def _secs(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:,.0f} s" if x >= 10 else f"{x:.2f} s"


def load_figures(result: Result) -> dict[str, Any]:
    """The offered load itself: volume, night share, peak minute (from the submitted SRs)."""
    c = result.compiled
    demand = result.tm.demand.sum(axis=0)
    per_minute = max(1, round(60 * c.scale / c.window))
    usable = len(demand) // per_minute * per_minute
    peak = (
        float(demand[:usable].reshape(-1, per_minute).sum(axis=1).max()) / (per_minute * c.window)
        if usable
        else 0.0
    )
    night = min(len(demand), round(6 * 3600 * c.scale / c.window))
    total = int(demand.sum())
    return {
        "submitted": total,
        # At the rates simulated, over 86,400 s (a compressed run carries less volume).
        "submitted_per_day": round(total * 86_400 / (c.windows * c.window)),
        "night_share": float(demand[:night].sum()) / total if total else None,
        "peak_minute_rate": peak,
        "peak_minute_share_of_capacity": peak / c.scenario.policy.capacity,
    }


def summary(result: Result) -> dict[str, Any]:
    """The summary JSON: scenario, policy, load, timing and both runs' figures."""
    c = result.compiled
    s, p = result.scenario, result.scenario.policy
    lo, hi = result.focus
    return {
        "scenario": s.name,
        "description": s.description,
        "scale": c.scale,
        "windows": c.windows,
        "simulated_seconds": c.windows * c.window,
        "scenario_clock": [clock(0), clock(c.clock_of(c.windows))],
        "focus": [clock(c.clock_of(lo)), clock(c.clock_of(hi))],
        "culprits": sorted(u.label for u in s.users if u.id in s.culprits),
        "users": len(s.users),
        "policy": {
            "capacity": p.capacity,
            "threshold": p.threshold,
            "budget": p.budget,
            "allocated": p.allocated,
            "floor": p.floor,
            "default_allocation": p.default_allocation,
            "window": p.window,
            "control_period": p.control_period,
            "engage_after": p.engage_after,
            "release_after": p.release_after,
            "release_ratio": p.release_ratio,
            "smoothing": p.smoothing,
            "shadow": p.shadow,
        },
        "simulator": {
            "slices_per_window": c.slices,
            "ticks_per_window": c.slices // c.tick_every,
            "exact": result.tm.counted == 0,  # every offer went through Gate.decide
        },
        "load": load_figures(result),
        "timing": {
            "wall_s": round(result.wall, 2),
            "cpu_s": round(result.cpu, 2),
            "tm_s": round(result.tm.wall, 2),
            "fcfs_s": round(result.fcfs.wall, 2),
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {_cpus()} CPUs",
        },
        "tm": result.tm_figures.to_dict(),
        "fcfs": result.fcfs_figures.to_dict(),
    }


def _cpus() -> int:
    return os.cpu_count() or 1


def _pick(result: Result, all_users: bool) -> tuple[list[int], list[int]]:
    """(Users listed by name, Users folded into "others")."""
    users = result.scenario.users
    order = sorted(
        range(len(users)),
        key=lambda u: (
            users[u].id not in result.scenario.culprits,
            -int(result.tm.demand[u].sum()),
        ),
    )
    if all_users or len(order) <= TOP + 1:
        return order, []
    return order[:TOP], order[TOP:]


def _user_cells(f: UserFigures, n: Callable[[int], str]) -> list[str]:
    return [n(f.admitted), n(f.refused), _pct(f.focus_guarantee_share)]


def _others_cells(figs: list[UserFigures], n: Callable[[int], str]) -> list[str]:
    admitted = sum(f.admitted for f in figs)
    refused = sum(f.refused for f in figs)
    shares = [f.focus_guarantee_share for f in figs if f.focus_guarantee_share is not None]
    worst = f"≥{_pct(min(shares))}" if shares else "–"
    return [n(admitted), n(refused), worst]


def table_rows(
    result: Result, *, all_users: bool = False, compact: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-User table (``compact``: counts like 48.1k)."""
    named, others = _pick(result, all_users)
    tm, fcfs = result.tm_figures.users, result.fcfs_figures.users
    n: Callable[[int], str] = _short if compact else _num
    sep = "\n" if compact else " "
    header = [
        "User",
        f"alloc{sep}SR/s",
        "submitted",
        f"TM{sep}admitted",
        f"TM{sep}refused",
        f"TM{sep}guarantee",
        f"FCFS{sep}admitted",
        f"FCFS{sep}refused",
        f"FCFS{sep}guarantee",
    ]
    rows = []
    for u in named:
        f = tm[u]
        name = f"{f.name} (culprit)" if f.culprit else f.name
        rows.append(
            [name, f"{f.allocation:g}", n(f.demand), *_user_cells(f, n), *_user_cells(fcfs[u], n)]
        )
    if others:
        rows.append(
            [
                f"{len(others)} others",
                f"{sum(tm[u].allocation for u in others):.4g}",
                n(sum(tm[u].demand for u in others)),
                *_others_cells([tm[u] for u in others], n),
                *_others_cells([fcfs[u] for u in others], n),
            ]
        )
    t, b = result.tm_figures, result.fcfs_figures
    rows.append(
        [
            "all Users",
            f"{result.scenario.policy.allocated:.4g}",
            n(t.demand),
            n(t.admitted),
            n(t.refused),
            _pct(t.well_behaved_focus_share) + "*",
            n(b.admitted),
            n(b.refused),
            _pct(b.well_behaved_focus_share) + "*",
        ]
    )
    return header, rows


def totals_rows(result: Result) -> list[tuple[str, str, str]]:
    """(figure, with TM, without TM) rows of the totals table."""
    t, b = result.tm_figures, result.fcfs_figures
    cap = result.scenario.policy.capacity

    def peak(f: RunFigures) -> str:
        return f"{f.peak_admitted:,} in a window ({_pct(f.peak_share)} of capacity)"

    def engaged(f: RunFigures) -> str:
        if not f.active_periods:
            return "never" if f.mode == "tm" else "– (none)"
        first = f"{len(f.active_periods)}×, first {clock(f.active_periods[0][0])}"
        return f"{first}, {f.active_seconds:,.0f} s in all"

    def delay(f: RunFigures) -> str:
        if f.activation_delay is None:
            return "–"
        return f"{f.activation_delay:+.2f} s"

    def waits(f: RunFigures) -> str:
        if not f.priority_admitted:
            return "–"
        return (
            f"mean {_secs(f.priority_wait_mean)}, p99 {_secs(f.priority_wait_p99)}, "
            f"max {_secs(f.priority_wait_max)}"
        )

    def drains(f: RunFigures) -> str:
        if not f.drains:
            return "–"
        last = f.drains[-1]["drained_after_s"]
        return ", ".join(f"{k} {_secs(v) if v is not None else 'not yet'}" for k, v in last.items())

    def jain(f: RunFigures) -> str:
        if f.jain is None:
            return "– (nobody throttled)"
        return f"{f.jain:.4f} over {f.throttled} User{'s' if f.throttled != 1 else ''}"

    rows = [
        ("SRs submitted", _num(t.demand), _num(b.demand)),
        ("requests admitted", _num(t.admitted), _num(b.admitted)),
        ("requests refused (re-sends included)", _num(t.refused), _num(b.refused)),
        ("SRs lost (open-loop senders)", _num(t.lost), _num(b.lost)),
        ("SRs still queued at the end", _num(t.queued), _num(b.queued)),
        (f"peak admitted (capacity {cap:,.0f} SR/s)", peak(t), peak(b)),
        ("windows over capacity", f"{t.over_capacity_windows}", f"{b.over_capacity_windows}"),
        (
            "well-behaved Users: guarantee delivered, whole run",
            _pct(t.well_behaved_share, 2),
            _pct(b.well_behaved_share, 2),
        ),
        (
            "  … in the focus span",
            _pct(t.well_behaved_focus_share, 2),
            _pct(b.well_behaved_focus_share, 2),
        ),
        (
            "  … the worst well-behaved User, focus span",
            _pct(t.well_behaved_min_focus_share, 2),
            _pct(b.well_behaved_min_focus_share, 2),
        ),
        ("Jain's index, throttled Users / fair share", jain(t), jain(b)),
        ("traffic management engaged", engaged(t), engaged(b)),
        ("  engaged after the offered load reached the budget", delay(t), delay(b)),
        ("wait of priority SRs (top-ups) in the clients", waits(t), waits(b)),
        ("after recovery, each class's backlog drained in", drains(t), drains(b)),
        ("real time", f"{t.wall:.1f} s", f"{b.wall:.1f} s"),
    ]
    return rows


def _title(result: Result) -> str:
    c = result.compiled
    lo, hi = result.focus
    return (
        f"{result.scenario.name}: {clock(0)}–{clock(c.clock_of(c.windows))} at scale {c.scale:g} "
        f"({c.windows:,} windows of {c.window:g} s), focus {clock(c.clock_of(lo))}–"
        f"{clock(c.clock_of(hi))}, {result.wall:.1f} s ({result.cpu:.1f} s CPU)"
    )


def render(result: Result, console: Console | None = None, *, all_users: bool = False) -> None:
    """Print the per-User table and the totals with rich."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"[bold]{_title(result)}[/bold]")
    if result.scenario.description:
        console.print(result.scenario.description, style="dim")
    header, rows = table_rows(result, all_users=all_users, compact=True)
    title = "per User (guarantee: share of min(offered, allocation) delivered, focus span)"
    whole = _users_table(Table, title, header, rows, range(len(header)))
    if _natural_width(console, whole) <= console.width or not console.is_terminal:
        _print_uncut(console, whole)  # piped: one table at its natural width, never cut
    else:
        # A narrow terminal: the two sides one above the other rather than cells cut to "4.0…".
        sides = (("with traffic management", range(6)), ("without (FCFS)", (0, 6, 7, 8)))
        for side, columns in sides:
            _print_uncut(console, _users_table(Table, f"{title}, {side}", header, rows, columns))
    console.print("[dim]* well-behaved Users only (culprits left out)[/dim]")
    console.print(_totals(result, Table))
    if result.files:
        console.print("wrote " + ", ".join(str(p) for p in result.files), style="dim")


def _users_table(
    table_type: type[Table],
    title: str,
    header: list[str],
    rows: list[list[str]],
    columns: Iterable[int],
) -> Table:
    picked = list(columns)
    users = table_type(title=title, title_justify="left", header_style="bold")
    for i in picked:
        users.add_column(header[i], justify="left" if i == 0 else "right", no_wrap=True)
    for n, row in enumerate(rows):
        users.add_row(
            *(row[i] for i in picked),
            end_section=n == len(rows) - 2,
            style="bold" if n == len(rows) - 1 else "",
        )
    return users


def _natural_width(console: Console, table: Table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update(max_width=10_000), table).maximum


def _print_uncut(console: Console, table: Table) -> None:
    """Print ``table`` at its natural width when the console is narrower: never cut a cell."""
    need = _natural_width(console, table)
    if need > console.width:
        table.width = need
    console.print(table, crop=False)


def _totals(result: Result, table_type: type[Table]) -> Table:
    totals = table_type(title="totals", title_justify="left", header_style="bold")
    totals.add_column("figure")
    totals.add_column("with traffic management")
    totals.add_column("without (FCFS)")
    for row in totals_rows(result):
        totals.add_row(*row)
    return totals


def table_markdown(result: Result) -> str:
    """Both tables as markdown (every User listed)."""
    header, rows = table_rows(result, all_users=True)
    lines = [f"# {_title(result)}", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Guarantee: share of min(offered, allocation) delivered in the focus span.", ""]
    lines += ["| figure | with traffic management | without (FCFS) |", "|---|---|---|"]
    lines += [f"| {a.strip()} | {b} | {c} |" for a, b, c in totals_rows(result)]
    return "\n".join(lines) + "\n"
