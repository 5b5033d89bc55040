"""The figures a run is judged by, computed from its per-window counts.

Guarantee delivered, per User, over a span of windows: in each window the User was
*entitled* to ``min(offered, G)`` where ``G`` is its guarantee for the window as the
gate counts it (``max(allocation, floor)`` x window, rounded, at least 1; scaled down in
proportion while capacity is reduced, and 0 while it is 0); it was *delivered*
``min(admitted, entitled)``. The share is delivered / entitled, summed over the span.
Computed per window, so a User throttled down to its allocation while it asks for more
still gets 100%, and a refused SR offered again counts each time it is offered.

Fair share: in each window where the offered total reached the budget (or traffic
management was on), :func:`srtm.fairshare.fair_share` of the budget over what each User
offered (guarantees and weights from the policy, no headroom), capped at the offer. A
User is *throttled* if it was refused anything in such a window; its fair-share ratio is
what it was admitted over its fair share, both summed over all such windows (so a User
refused one SR it sends again next second is not counted as half-served). Jain's index
over the throttled Users' ratios is 1 when each got the same fraction of its fair share.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from srtm.fairshare import Sharing
from srtm.sim._classes import class_name

if TYPE_CHECKING:
    from srtm.sim._runner import Compiled, IntArray, Run

__all__ = ["RunFigures", "UserFigures", "clock", "figures", "focus_span", "guarantees", "jain"]


def clock(seconds: float) -> str:
    """``HH:MM:SS`` of a time of day (days past the first add 24 h)."""
    s = round(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def jain(values: list[float]) -> float | None:
    """Jain's fairness index ``(Σx)² / (n Σx²)``: 1 when all equal; None for no values."""
    if not values:
        return None
    squares = math.fsum(x * x for x in values)
    if squares == 0:
        return 1.0
    return math.fsum(values) ** 2 / (len(values) * squares)


def _gate_count(x: float) -> int:
    # srtm.gate's rounding of a rate x window to a count: at least 1 for anything positive.
    return 0 if x <= 0 else max(1, round(x))


def guarantees(c: Compiled, capacity: np.ndarray[Any, Any]) -> IntArray:
    """(users, windows): each User's guaranteed count per window at the capacity in force."""
    policy = c.scenario.policy
    ratio = np.minimum(capacity / policy.capacity, 1.0)
    out = np.zeros((len(c.scenario.users), c.windows), dtype=np.int64)
    # A day has a handful of distinct capacity ratios: count each once, then index.
    ratios, where = np.unique(ratio, return_inverse=True)
    for u, user in enumerate(c.scenario.users):
        g = policy.guarantee(user.id) * c.window
        levels = np.array([_gate_count(g * float(r)) for r in ratios], dtype=np.int64)
        out[u] = levels[where.reshape(-1)]
    return out


@dataclass(frozen=True, slots=True)
class UserFigures:
    """One User's figures in one run (whole run unless the field says otherwise)."""

    id: str
    name: str
    allocation: float
    culprit: bool
    demand: int  # SRs its back end submitted
    offered: int  # requests sent, re-sends included
    admitted: int
    refused: int
    refused_user: int  # over its own limit
    refused_capacity: int  # for the system's sake
    lost: int  # refused and dropped (open loop)
    queued: int  # still waiting in its client at the end
    guarantee_share: float | None  # delivered / entitled over the whole run
    focus_guarantee_share: float | None  # ... over the focus span
    focus_offered: int
    focus_admitted: int
    fair_ratio: float | None  # admitted / fair share where it was throttled
    priority_admitted: int
    priority_wait_max: float  # s


@dataclass(frozen=True, slots=True)
class RunFigures:
    """The totals of one run."""

    mode: str
    label: str
    demand: int
    offered: int
    admitted: int
    refused: int
    lost: int
    queued: int
    peak_admitted: int  # most SRs admitted in one window
    peak_share: float  # ... as a share of that window's capacity
    over_capacity_windows: int  # windows admitting more than capacity (must be 0)
    well_behaved_share: float | None  # guarantee delivered, well-behaved Users, whole run
    well_behaved_focus_share: float | None  # ... over the focus span
    well_behaved_min_focus_share: float | None  # the worst well-behaved User, focus span
    jain: float | None
    throttled: int  # Users in the Jain index
    active_periods: list[tuple[float, float]]  # (start, end) clock seconds
    active_seconds: float
    first_active: float | None  # clock seconds
    activation_delay: float | None  # s (simulated) from the offered load reaching the budget
    priority_admitted: int
    priority_wait_mean: float | None
    priority_wait_p50: float | None
    priority_wait_p99: float | None
    priority_wait_max: float | None
    class_wait_mean: dict[str, float | None]
    drains: list[dict[str, Any]]
    wall: float
    decisions: int
    counted: int
    users: list[UserFigures] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["active_periods"] = [[clock(a), clock(b)] for a, b in self.active_periods]
        out["first_active"] = None if self.first_active is None else clock(self.first_active)
        return out


def _share(delivered: int, entitled: int) -> float | None:
    return delivered / entitled if entitled else None


def _percentile(hist: dict[float, int], q: float) -> float | None:
    total = sum(hist.values())
    if not total:
        return None
    target = q * total
    seen = 0
    for wait, count in sorted(hist.items()):
        seen += count
        if seen >= target:
            return wait
    return max(hist)


def _periods(active: np.ndarray[Any, Any]) -> list[tuple[int, int]]:
    """(first, last + 1) window of each run of True."""
    padded = np.concatenate([[False], active, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def focus_span(c: Compiled, tm: Run, fcfs: Run) -> tuple[int, int]:
    """The scenario's focus, else where either run reached the budget or capacity was cut."""
    if c.focus is not None:
        return c.focus
    policy = c.scenario.policy
    budget = np.floor(policy.threshold * tm.capacity * c.window + 1e-9)
    hot = (
        (tm.offered.sum(axis=0) >= budget)
        | (fcfs.offered.sum(axis=0) >= budget)
        | tm.active
        | (tm.capacity < policy.capacity)
    )
    pad = round(300 * c.scale / c.window)  # five minutes of the scenario's own time
    if hot.any():
        idx = np.flatnonzero(hot)
        return max(0, int(idx[0]) - pad), min(c.windows, int(idx[-1]) + 1 + pad)
    per_hour = max(1, round(3600 * c.scale / c.window))
    totals = tm.demand.sum(axis=0)
    usable = len(totals) // per_hour * per_hour
    if usable == 0:
        return 0, c.windows
    hour = int(totals[:usable].reshape(-1, per_hour).sum(axis=1).argmax())
    return hour * per_hour, (hour + 1) * per_hour


def figures(run: Run, span: tuple[int, int]) -> RunFigures:
    """Everything the table and the summary report about one run."""
    c = run.compiled
    scenario, policy = c.scenario, c.scenario.policy
    users = scenario.users
    lo, hi = span
    offered, admitted = run.offered, run.admitted
    g = guarantees(c, run.capacity)
    entitled = np.minimum(offered, g)
    delivered = np.minimum(admitted, entitled)
    fair = _fair_ratios(run)
    wb = np.array([u.id not in scenario.culprits for u in users], dtype=np.bool_)
    user_figs: list[UserFigures] = []
    for u, user in enumerate(users):
        refused = int(offered[u].sum() - admitted[u].sum())
        user_figs.append(
            UserFigures(
                id=user.id,
                name=user.label,
                allocation=policy.guarantee(user.id),
                culprit=user.id in scenario.culprits,
                demand=int(run.demand[u].sum()),
                offered=int(offered[u].sum()),
                admitted=int(admitted[u].sum()),
                refused=refused,
                refused_user=int(run.refused_user[u]),
                refused_capacity=int(run.refused_capacity[u]),
                lost=int(run.lost[u]),
                queued=int(run.queued[u]),
                guarantee_share=_share(int(delivered[u].sum()), int(entitled[u].sum())),
                focus_guarantee_share=_share(
                    int(delivered[u, lo:hi].sum()), int(entitled[u, lo:hi].sum())
                ),
                focus_offered=int(offered[u, lo:hi].sum()),
                focus_admitted=int(admitted[u, lo:hi].sum()),
                fair_ratio=fair.get(u),
                priority_admitted=int(run.priority_admitted[u]),
                priority_wait_max=float(run.priority_wait_max[u]),
            )
        )
    wb_shares = [
        f.focus_guarantee_share
        for f, ok in zip(user_figs, wb, strict=True)
        if ok and f.focus_guarantee_share is not None
    ]
    capacity_counts = np.floor(run.capacity * c.window + 1e-9)
    totals = admitted.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(capacity_counts > 0, totals / capacity_counts, 0.0)
    periods = _periods(run.active)
    first_active = periods[0][0] if periods else None
    delay = None
    if first_active is not None:
        budget = np.floor(policy.threshold * run.capacity * c.window + 1e-9)
        reached = np.flatnonzero(offered.sum(axis=0) >= budget)
        if len(reached):
            delay = (first_active - int(reached[0])) * c.window
    hist = run.latency_hist
    count = sum(hist.values())
    mean = math.fsum(w * n for w, n in hist.items()) / count if count else None
    class_wait: dict[str, float | None] = {}
    for k, cls in enumerate(c.classes):
        n = int(run.class_count[k])
        class_wait[class_name(cls)] = float(run.class_wait[k]) / n if n else None
    drains = []
    for mark, per_user in run.drains:
        worst: dict[str, float | None] = {}
        for k, cls in enumerate(c.classes):
            times = [t for row in per_user if row for t in [row[k]] if t is not None]
            pending = [row for row in per_user if row and row[k] is None]
            # Clients live in real (virtual) seconds, whatever the scale.
            worst[class_name(cls)] = None if pending or not times else max(times) - mark
        drains.append({"recovery": clock(c.clock_of(mark / c.window)), "drained_after_s": worst})
    return RunFigures(
        mode=run.mode,
        label=run.label,
        demand=int(run.demand.sum()),
        offered=int(offered.sum()),
        admitted=int(admitted.sum()),
        refused=int(offered.sum() - admitted.sum()),
        lost=int(run.lost.sum()),
        queued=int(run.queued.sum()),
        peak_admitted=int(totals.max()) if len(totals) else 0,
        peak_share=float(shares.max()) if len(shares) else 0.0,
        over_capacity_windows=int((totals > capacity_counts).sum()),
        well_behaved_share=_share(int(delivered[wb].sum()), int(entitled[wb].sum())),
        well_behaved_focus_share=_share(
            int(delivered[wb, lo:hi].sum()), int(entitled[wb, lo:hi].sum())
        ),
        well_behaved_min_focus_share=min(wb_shares) if wb_shares else None,
        jain=jain(list(fair.values())),
        throttled=len(fair),
        active_periods=[(c.clock_of(a), c.clock_of(b)) for a, b in periods],
        active_seconds=sum(b - a for a, b in periods) * c.window / c.scale,
        first_active=None if first_active is None else c.clock_of(first_active),
        activation_delay=delay,
        priority_admitted=count,
        priority_wait_mean=mean,
        priority_wait_p50=_percentile(hist, 0.5),
        priority_wait_p99=_percentile(hist, 0.99),
        priority_wait_max=max(hist) if hist else None,
        class_wait_mean=class_wait,
        drains=drains,
        wall=run.wall,
        decisions=run.decisions,
        counted=run.counted,
        users=user_figs,
    )


def _fair_ratios(run: Run) -> dict[int, float]:
    """Admitted over fair share for each throttled User, over the contested windows."""
    c = run.compiled
    policy = c.scenario.policy
    users = c.scenario.users
    offered, admitted = run.offered, run.admitted
    budget = policy.threshold * run.capacity * c.window
    contested = ((offered.sum(axis=0) >= np.floor(budget + 1e-9)) | run.active) & (run.capacity > 0)
    refused = (offered > admitted) & contested[None, :]
    throttled = np.flatnonzero(refused.any(axis=1))
    if len(throttled) == 0:
        return {}
    ids = [u.id for u in users]
    guarantee = {u: policy.guarantee(u) for u in ids}
    weight = {u: policy.weight(u) for u in ids}
    # One Sharing among every User, built once: a User absent from a window (demand 0)
    # holds nothing and claims nothing, so the present Users' shares are fair_share's
    # among them alone, to the last bit (the claimants keep their order, the sums are
    # exact).
    sharing = Sharing(ids, guarantee, weight)
    windows = np.flatnonzero(contested)
    columns = offered[:, windows].T  # (contested windows, users)
    rates: list[list[float]] = (columns / c.window).tolist()  # as fair_share makes them
    budgets: list[float] = (budget[windows] / c.window).tolist()
    shares = np.array(
        [
            list(sharing(b, dict(zip(ids, rate, strict=True)), headroom=False).values())
            for b, rate in zip(budgets, rates, strict=True)
        ],
        dtype=np.float64,
    ).reshape(columns.shape)
    # Σ over windows of min(share x window, offered), added window after window as a
    # running sum (cumsum is sequential, unlike sum); an absent User adds 0.
    capped = np.minimum(shares * c.window, columns.astype(np.float64))
    fair: list[float] = (
        np.cumsum(capped, axis=0)[-1].tolist() if len(windows) else [0.0] * len(users)
    )
    got: list[float] = admitted[:, windows].sum(axis=1).astype(np.float64).tolist()
    return {int(u): got[u] / fair[u] for u in throttled.tolist() if fair[u] > 0}
