"""From what was recorded to figures and a verdict.

The gateway's recorder gives each User's requests per window (offered, admitted,
refused with 429 or 503), the sampler whether traffic management was on, and the
Suppliers' clients every SR's latency. The verdict's checks are computed from those
measurements only, each with its figure and its bar.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from srtm.demo._gateway import Counts
from srtm.fairshare import fair_share

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from srtm.demo._config import DemoConfig
    from srtm.demo._gateway import Sample
    from srtm.demo._suppliers import Settled

__all__ = ["Check", "Report", "analyse", "percentile", "tm_intervals", "windows_of"]

TOP_UP = "2.2"
#: Top-ups slower than this (s, p95) get a note: a throttled User waits at least this long.
SLOW_TOP_UP = 1.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def windows_of(
    config: DemoConfig, counts: Mapping[int, Mapping[str, Counts]], start: float, n: int
) -> list[dict[str, Counts]]:
    """The run's first ``n`` windows: Supplier label -> counts (zero where nothing came)."""
    first = round(start / config.window)
    label_of = {s.user_id: s.label for s in config.suppliers}
    out: list[dict[str, Counts]] = []
    for k in range(n):
        row = {s.label: Counts() for s in config.suppliers}
        for user, c in counts.get(first + k, {}).items():
            label = label_of.get(user)
            if label is not None:
                row[label] = c
        out.append(row)
    return out


def tm_intervals(samples: Iterable[Sample], start: float, end: float) -> list[tuple[float, float]]:
    """When traffic management was on, as (on, off) in seconds from the start."""
    intervals: list[tuple[float, float]] = []
    on: float | None = None
    for s in samples:
        t = s.t - start
        if s.active and on is None:
            on = t
        elif not s.active and on is not None:
            intervals.append((on, t))
            on = None
    if on is not None:
        intervals.append((on, end - start))
    return intervals


@dataclass(frozen=True, slots=True)
class Check:
    """One criterion of the verdict: what, whether it held, and the figures."""

    name: str
    passed: bool
    detail: str


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x < 0.9995 or x == 1 else f"{100 * x:.2f}%"


@dataclass
class Report:
    """Everything the run measured, the checks and the verdict."""

    config: DemoConfig
    start: float  # wall clock of the run's first window
    windows: list[dict[str, Counts]]
    active: list[bool]  # per window: traffic management on at any time in it
    intervals: list[tuple[float, float]]
    settled: list[Settled]
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a reader should know; not judged
    figures: dict[str, Any] = field(default_factory=dict)
    took: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def verdict(self) -> str:
        f = self.figures
        runaway = self.config.runaway.label
        head = "PASS" if self.passed else "FAIL"
        return (
            f"{head}: well-behaved Users had {_pct(f['well_behaved_share'])} of their requests "
            f"admitted while {runaway} ran amok; their top-ups took median "
            f"{_ms(f['topup_flood_p50'])} (p95 {_ms(f['topup_flood_p95'])}); {runaway} was held "
            f"to {f['runaway_admitted_rate']:.0f} SR/s of the {f['runaway_offered_rate']:.0f} "
            f"it sent (fair share {f['runaway_fair_rate']:.0f}); admitted total never exceeded "
            f"capacity (peak {f['peak_admitted']}/{f['capacity_per_window']:.0f} per window)"
            if self.passed
            else f"{head}: "
            + "; ".join(c.name + ": " + c.detail for c in self.checks if not c.passed)
        )

    @property
    def verdict_short(self) -> str:
        """Two lines for a figure's title."""
        f = self.figures
        cfg = self.config
        good = ", ".join(s.label for s in cfg.well_behaved)
        runaway = cfg.runaway.label
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"srtm demo: {verdict}.  While {runaway} ran amok, {good} had "
            f"{_pct(f['well_behaved_share'])} of their requests admitted; "
            f"their top-ups took median {_ms(f['topup_flood_p50'])}, "
            f"p95 {_ms(f['topup_flood_p95'])}.\n"
            f"{runaway} sent {f['runaway_offered_rate']:.0f} SR/s and was held to "
            f"{f['runaway_admitted_rate']:.0f} (fair share {f['runaway_fair_rate']:.0f}); "
            f"peak admitted {f['peak_admitted']} per window against a capacity of "
            f"{f['capacity_per_window']:.0f}."
        )

    def to_json(self) -> dict[str, Any]:
        cfg = self.config
        users: dict[str, Any] = {}
        for s in cfg.suppliers:
            mine = [x for x in self.settled if x.label == s.label]
            topups = [x.latency for x in mine if x.variant == TOP_UP and x.outcome == "response"]
            users[s.label] = {
                "user_id": s.user_id,
                "allocation": s.allocation,
                "rate": s.rate,
                "runaway": s.runaway,
                "requests": {
                    key: sum(getattr(w[s.label], key) for w in self.windows)
                    for key in ("offered", "admitted", "refused_429", "refused_503", "other")
                },
                "srs_settled": len(mine),
                "srs_admitted": sum(x.status == 200 for x in mine),
                "topup_latency_ms": {
                    "count": len(topups),
                    "median": _round_ms(percentile(topups, 50)),
                    "p95": _round_ms(percentile(topups, 95)),
                },
            }
        return {
            "verdict": "PASS" if self.passed else "FAIL",
            "verdict_line": self.verdict,
            "checks": [
                {"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks
            ],
            "notes": self.notes,
            "figures": self.figures,
            "config": {
                "duration": cfg.duration,
                "capacity": cfg.capacity,
                "threshold": cfg.threshold,
                "budget": cfg.budget,
                "window": cfg.window,
                "amok": [cfg.amok_start, cfg.amok_end],
                "runaway": cfg.runaway.label,
                "flood_connections": cfg.flood_connections,
                "seed": cfg.seed,
            },
            "users": users,
            "traffic_management": [[round(a, 2), round(b, 2)] for a, b in self.intervals],
            "windows": [
                {
                    "t": k * cfg.window,
                    "active": self.active[k],
                    "users": {
                        label: [c.offered, c.admitted, c.refused_429, c.refused_503]
                        for label, c in w.items()
                    },
                }
                for k, w in enumerate(self.windows)
            ],
            "windows_columns": ["offered", "admitted", "refused_429", "refused_503"],
            "took_s": round(self.took, 2),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }


def _round_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def analyse(
    config: DemoConfig,
    *,
    start: float,
    counts: Mapping[int, Mapping[str, Counts]],
    samples: Sequence[Sample],
    settled: Sequence[Settled],
    submitted: Mapping[str, int],
    unsettled: Mapping[str, int],
) -> Report:
    """Figures and checks of a finished run."""
    w = config.window
    n = math.ceil(config.duration / w - 1e-9)
    windows = windows_of(config, counts, start, n)
    end = start + config.duration
    intervals = tm_intervals([s for s in samples if s.t < end], start, end)
    active = [any(a < (k + 1) * w and b > k * w for a, b in intervals) for k in range(n)]
    report = Report(config, start, windows, active, intervals, list(settled))
    good = [s.label for s in config.well_behaved]
    runaway = config.runaway.label
    f = report.figures
    checks = report.checks

    # 1. The well-behaved Users' requests: admitted at the gateway.
    shares: dict[str, float] = {}
    for label in good:
        offered = sum(x[label].offered for x in windows)
        admitted = sum(x[label].admitted for x in windows)
        shares[label] = admitted / offered if offered else 0.0
    total_offered = sum(x[label].offered for x in windows for label in good)
    total_admitted = sum(x[label].admitted for x in windows for label in good)
    f["well_behaved_share"] = total_admitted / total_offered if total_offered else 0.0
    f["well_behaved_share_by_user"] = {k: round(v, 4) for k, v in shares.items()}
    worst = min(shares, key=lambda k: shares[k])
    refused = total_offered - total_admitted
    checks.append(
        Check(
            "well-behaved Users admitted",
            shares[worst] >= config.min_share,
            f"each had at least {_pct(config.min_share)} of its requests admitted "
            f"(lowest: {worst} {_pct(shares[worst])}; {refused} of {total_offered} refused)",
        )
    )

    # 2. Their SRs: every one ended admitted (none lost, none given up).
    good_settled = [x for x in settled if x.label in good]
    not_ok = sum(x.outcome != "response" or x.status != 200 for x in good_settled)
    n_submitted = sum(submitted.get(label, 0) for label in good)
    lost = sum(unsettled.get(label, 0) for label in good) + max(0, n_submitted - len(good_settled))
    checks.append(
        Check(
            "every well-behaved SR answered",
            not_ok == 0 and lost == 0 and n_submitted > 0,
            f"{n_submitted} submitted, {len(good_settled) - not_ok} admitted, "
            f"{not_ok} refused or failed, {lost} without an end",
        )
    )

    # 3. The well-behaved Users' top-ups while the runaway floods: never held back by the
    #    gateway (admitted at the first attempt), and how long they took. The latency is
    #    reported, not judged: it depends on this machine's load as much as on anything
    #    the gateway does, and a refusal would show as a second attempt anyway.
    def topups(lo: float, hi: float, labels: Sequence[str]) -> list[Settled]:
        return [
            x
            for x in settled
            if x.label in labels and x.variant == TOP_UP and lo <= x.submitted - start < hi
        ]

    def latencies(xs: Sequence[Settled]) -> list[float]:
        return [x.latency for x in xs if x.outcome == "response"]

    flood_topups = topups(config.amok_start, config.amok_end, good)
    flood_lat = latencies(flood_topups)
    calm_lat = latencies(topups(0, config.amok_start, good))
    runaway_lat = latencies(topups(config.amok_start, config.amok_end, [runaway]))
    first_go = sum(x.status == 200 and x.attempts == 1 for x in flood_topups)
    f["topup_flood_count"] = len(flood_topups)
    f["topup_flood_first_attempt"] = first_go
    f["topup_flood_p50"] = percentile(flood_lat, 50)
    f["topup_flood_p95"] = percentile(flood_lat, 95)
    f["topup_calm_p50"] = percentile(calm_lat, 50)
    f["topup_calm_p95"] = percentile(calm_lat, 95)
    f["runaway_topup_flood_p50"] = percentile(runaway_lat, 50)
    f["runaway_topup_flood_p95"] = percentile(runaway_lat, 95)
    checks.append(
        Check(
            "top-ups never held back",
            len(flood_topups) >= 5 and first_go == len(flood_topups),
            f"{first_go} of the well-behaved Users' {len(flood_topups)} top-ups during the "
            f"flood were admitted at the first attempt; they took median "
            f"{_ms(f['topup_flood_p50'])}, p95 {_ms(f['topup_flood_p95'])} (before the flood: "
            f"median {_ms(f['topup_calm_p50'])}, p95 {_ms(f['topup_calm_p95'])})",
        )
    )
    p95 = f["topup_flood_p95"]
    if p95 is not None and p95 > SLOW_TOP_UP:
        report.notes.append(
            f"the well-behaved Users' top-ups took {_ms(p95)} at the 95th percentile during "
            f"the flood; {'none was' if first_go == len(flood_topups) else 'not all were'} "
            "refused, so that time went queueing for this machine's CPU (the gateway, the "
            "Suppliers and the runaway share it), not waiting out a throttle"
        )

    # 4. The runaway held to its fair share, in the windows wholly inside the flood.
    flood = [
        k
        for k in range(n)
        if k * w >= config.amok_start - 1e-9 and (k + 1) * w <= config.amok_end + 1e-9
    ]
    fair = 0.0
    for k in flood:
        demands = {label: float(c.offered) for label, c in windows[k].items()}
        guarantees = {s.label: s.allocation * w for s in config.suppliers}
        fair += fair_share(config.budget * w, demands, guarantees)[runaway]
    seconds = max(len(flood) * w, 1e-9)
    offered_r = sum(windows[k][runaway].offered for k in flood)
    admitted_r = sum(windows[k][runaway].admitted for k in flood)
    refused_r = sum(windows[k][runaway].refused for k in flood)
    f["flood_windows"] = len(flood)
    f["runaway_offered_rate"] = offered_r / seconds
    f["runaway_admitted_rate"] = admitted_r / seconds
    f["runaway_fair_rate"] = fair / seconds
    f["runaway_refused"] = refused_r
    allowed = config.fair_share_slack * fair + len(flood)
    real = offered_r >= 1.5 * fair and len(flood) > 0
    checks.append(
        Check(
            f"{runaway} pushed past its fair share",
            real,
            f"{runaway} sent {offered_r / seconds:.0f} SR/s during the flood against a fair share "
            f"of {fair / seconds:.0f} SR/s (needs 1.5x for a real test"
            + ("" if real else "; this machine's load generator was too slow")
            + ")",
        )
    )
    checks.append(
        Check(
            f"{runaway} held to its fair share",
            admitted_r <= allowed and refused_r > 0,
            f"{runaway} had {admitted_r / seconds:.1f} SR/s admitted, fair share "
            f"{fair / seconds:.1f} SR/s from the measured demand (bar: "
            f"{config.fair_share_slack:.2f}x + 1 per window for rounding); {refused_r} refused",
        )
    )

    # 5. Traffic management: off until the incident, on during it, off again after it
    # (within the run: a TM still on at the end was not engaged "for the incident only").
    before = [a for a, _ in intervals if a < config.amok_start]
    during = [a for a, b in intervals if a < config.amok_end and b > config.amok_start]
    after = [a for a, _ in intervals if a >= config.amok_end]
    f["tm_engaged_at"] = round(during[0], 2) if during else None
    ends = [b for a, b in intervals if b > config.amok_start]
    f["tm_released_at"] = round(ends[-1], 2) if ends and ends[-1] < config.duration else None
    released = bool(during) and f["tm_released_at"] is not None
    problems = (
        ([] if during else ["never engaged during the flood"])
        + ([f"on before the flood, at {before[0]:.1f} s"] if before else [])
        + ([f"on after the flood, at {after[0]:.1f} s"] if after else [])
        + (
            [
                f"still on when the run ended at {config.duration:.0f} s, "
                f"{config.duration - config.amok_end:.1f} s after the flood stopped"
            ]
            if during and not released
            else []
        )
    )
    checks.append(
        Check(
            "traffic management engaged for the incident only",
            not problems,
            "; ".join(problems)
            if problems
            else f"off before the flood, on at {during[0]:.1f} s, "
            f"off again at {f['tm_released_at']:.1f} s",
        )
    )

    # 6. The hard cap: no window admitted more than capacity.
    totals = [sum(c.admitted for c in x.values()) for x in windows]
    f["peak_admitted"] = max(totals, default=0)
    f["capacity_per_window"] = config.capacity * w
    f["budget_per_window"] = config.budget * w
    checks.append(
        Check(
            "admitted total within capacity",
            f["peak_admitted"] <= config.capacity * w,
            f"peak {f['peak_admitted']} admitted in a window against a capacity of "
            f"{config.capacity * w:.0f} (threshold {config.budget * w:.0f})",
        )
    )
    for key in (
        "topup_flood_p50",
        "topup_flood_p95",
        "topup_calm_p50",
        "topup_calm_p95",
        "runaway_topup_flood_p50",
        "runaway_topup_flood_p95",
    ):
        f[key] = None if f[key] is None else round(f[key], 4)
    for key in (
        "well_behaved_share",
        "runaway_offered_rate",
        "runaway_admitted_rate",
        "runaway_fair_rate",
    ):
        f[key] = round(f[key], 4)
    return report
