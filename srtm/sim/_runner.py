"""The loop: window after window of virtual time, through two engines in lockstep.

Each window (``policy.window``) is cut into at least :data:`MIN_SLICES` decision slices,
and into the policy's control periods: the gate ticks at the start of every control
period (its governor reads the sliding offered rate and recomputes, as the middleware's
background task would), and in every slice each User with something to send offers it.
Incidents apply at the start of their window (``set_capacity``).

Arrivals are Poisson around each User's curves per window, spread evenly over the
window's slices (the remainder in a random slice), drawn an hour of windows at a time
and shared by both engines, each of which has its own copy of every client.

A window in which nothing can be refused (nobody queued or paused, every offer within
its line, and the engine's :meth:`~srtm.sim._engines.Engine.fits` says the lot is
admitted in full) is counted in bulk, without going slice by slice, whenever the engine
reads nothing inside a window: always for the baseline, and for the gate when its
control period is the whole window. The counts, the ledger and the governor are then
exactly what slice-by-slice decisions would have produced.

``scale`` compresses time: at scale 0.1 a day lasts 8,640 windows, every curve and
incident is squeezed tenfold, and every rate stays the same.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from srtm.ledger import Reason
from srtm.sim._client import ClientState, OpenLoopState, Recorder, Sender
from srtm.sim._curves import shared_rate
from srtm.sim._engines import FcfsEngine, GateEngine
from srtm.sim._errors import ScenarioError
from srtm.sim._scenario import Client

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from collections.abc import Set as AbstractSet

    from srtm.sim._curves import Curve
    from srtm.sim._engines import Engine, Verdict
    from srtm.sim._scenario import Scenario

__all__ = ["LATENCY_BIN", "MIN_SLICES", "Compiled", "Run", "compile_scenario", "simulate"]

#: Fewest decision slices a window is cut into, so that no User always goes first.
MIN_SLICES = 4
#: Seconds of virtual time per bin of the priority-class latency series.
LATENCY_BIN = 10.0
#: Windows of arrivals drawn at once.
_CHUNK = 3600
#: Windows split into slices at once, when a window needs slicing (not every window does).
_SPLIT_BLOCK = 32
_USER = int(Reason.USER)
_EPS = 1e-9
_UNBOUNDED = 1 << 62  # an open loop's "line": whatever arrives is offered
_NOBODY: frozenset[int] = frozenset()

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Arrival = tuple[int, list[int], int]  # (user, SRs per class, total)


@dataclass(frozen=True, eq=False)
class Compiled:
    """A scenario laid out on windows and slices at one scale."""

    scenario: Scenario
    scale: float
    window: float
    slices: int  # decision slices per window
    tick_every: int  # slices per control period: the gate ticks every tick_every-th slice
    windows: int
    classes: tuple[int, ...]  # distinct priority classes, most urgent first
    priority_index: int  # index in ``classes`` of the scenario's priority class (-1: none)
    curves: tuple[tuple[Curve | None, ...], ...]  # per User, per class index
    clients: tuple[bool, ...]  # per User: behind a Client (True) or an open loop
    line: tuple[int, ...]  # per User: most its line carries in a window
    events: tuple[tuple[int, float], ...]  # (window, capacity)
    focus: tuple[int, int] | None  # in windows

    def clock_of(self, window: float) -> float:
        """The scenario's own (uncompressed) time of day at a window, in seconds."""
        return window * self.window / self.scale


def compile_scenario(scenario: Scenario, scale: float) -> Compiled:
    """Lay a scenario out on windows; ``scale`` compresses time (rates are kept)."""
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise ScenarioError("scale", f"must be a number, got {scale!r}")
    if not 0 < scale <= 10:
        raise ScenarioError("scale", f"must be in (0, 10], got {scale!r}")
    policy = scenario.policy
    window = policy.window
    period = policy.control_period or window
    ticks = round(window / period)
    if ticks < 1 or abs(ticks * period - window) > 1e-9 * window:
        raise ScenarioError(
            "policy.control_period",
            "the simulator needs a whole number of control periods per window; "
            f"window {window} s, control_period {period} s",
        )
    slices = ticks * math.ceil(MIN_SLICES / ticks)
    windows = max(1, round(scenario.duration * scale / window))
    classes = tuple(sorted({s.priority for u in scenario.users for s in u.demand}))
    index = {c: i for i, c in enumerate(classes)}
    curves: list[tuple[Curve | None, ...]] = []
    for user in scenario.users:
        per: list[Curve | None] = [None] * len(classes)
        for s in user.demand:
            i = index[s.priority]
            existing = per[i]
            per[i] = s.rate if existing is None else existing + s.rate
        curves.append(tuple(per))
    clients = tuple(isinstance(u.client, Client) for u in scenario.users)
    line = tuple(
        max(slices, math.floor(u.client.max_rate * window / slices) * slices)
        if isinstance(u.client, Client)
        else _UNBOUNDED
        for u in scenario.users
    )
    events = tuple(
        (
            min(round(c.at * scale / window), windows - 1),
            policy.capacity if c.capacity is None else c.capacity,
        )
        for c in scenario.incidents
    )
    focus = None
    if scenario.focus is not None:
        lo, hi = scenario.focus
        focus = (round(lo * scale / window), max(round(hi * scale / window), 1))
    return Compiled(
        scenario=scenario,
        scale=float(scale),
        window=window,
        slices=slices,
        tick_every=slices // ticks,
        windows=windows,
        classes=classes,
        priority_index=index.get(scenario.priority_class, -1),
        curves=tuple(curves),
        clients=clients,
        line=line,
        events=events,
        focus=focus,
    )


@dataclass(frozen=True, eq=False)
class Run:
    """Everything one engine did with one scenario, window by window."""

    mode: str  # "tm" or "fcfs"
    label: str
    compiled: Compiled
    demand: IntArray  # (users, windows): SRs submitted by each User's back end
    offered: IntArray  # (users, windows): requests sent to the gateway, re-sends included
    admitted: IntArray  # (users, windows)
    capacity: FloatArray  # (windows,): SR/s in force
    active: BoolArray  # (windows,): traffic management engaged at some tick of the window
    backlog: IntArray  # (classes, windows): SRs queued in the clients at each window's end
    refused_user: IntArray  # (users,): refused for being over the User's limit
    refused_capacity: IntArray  # (users,): refused for the system's sake
    lost: IntArray  # (users,): refused and dropped (open-loop senders)
    queued: IntArray  # (users,): still queued at the end
    priority_admitted: IntArray  # (users,): priority-class SRs admitted (clients)
    priority_wait_max: FloatArray  # (users,): longest wait of a priority-class SR (s)
    latency_count: IntArray  # (bins,): priority-class SRs admitted per LATENCY_BIN (clients)
    latency_sum: FloatArray  # (bins,): ... their waits added up (s)
    latency_max: FloatArray  # (bins,)
    latency_hist: dict[float, int]  # wait (s) -> priority-class SRs
    class_count: IntArray  # (classes,): SRs admitted per class (clients)
    class_wait: FloatArray  # (classes,): their waits added up (s)
    drains: list[tuple[float, list[list[float | None]]]]  # (mark, per User, per class)
    wall: float  # seconds of real time this engine's side of the run took
    decisions: int  # offers decided one by one by the engine
    counted: int  # offers proved admitted and counted in bulk


class _Chunk:
    """An hour of arrivals: per window, and per slice when the engine reads inside windows."""

    def __init__(self, c: Compiled, start: int, length: int, rng: np.random.Generator) -> None:
        self.c, self.start, self.length = c, start, length
        t = (np.arange(start, start + length, dtype=np.float64) + 0.5) * c.window / c.scale
        n_users, n_classes = len(c.curves), len(c.classes)
        counts = np.zeros((n_users, n_classes, length), dtype=np.int64)
        memo: dict[int, FloatArray] = {}  # rates of the curves shared by several, at t
        for u, per in enumerate(c.curves):
            for k, curve in enumerate(per):
                if curve is not None:
                    expected = shared_rate(curve, t, memo) * c.window
                    if np.any(expected > 0):
                        counts[u, k] = rng.poisson(expected)
        self.counts = counts
        # Which slice gets the first of a window's remainder, per User and class.
        self.first = rng.integers(0, c.slices, size=counts.shape)
        self.totals = counts.sum(axis=1)
        line = np.array(c.line, dtype=np.int64)[:, None]
        self.window_total: list[int] = self.totals.sum(axis=0).tolist()
        self.window_most: list[int] = self.totals.max(axis=0).tolist()
        self.within_lines: list[bool] = (self.totals <= line).all(axis=0).tolist()
        self._window = _Index(self.totals)
        self.parts: IntArray | None = None
        self._slice: _Index | None = None
        self._cached: tuple[int, list[list[Arrival]]] | None = None
        self._block: tuple[int, IntArray] | None = None  # (first window, its block's split)
        if c.tick_every < c.slices:  # ticks inside windows: the gate goes slice by slice
            self.parts = self._split(slice(0, length))
            slice_totals = self.parts.sum(axis=1)
            self._slice = _Index(slice_totals)
            self.slice_within_lines: list[bool] = (
                (slice_totals <= line // c.slices).all(axis=0).tolist()
            )

    def offers(self, j: int) -> tuple[list[int], list[int]]:
        """The Users with arrivals in window ``j`` of the chunk, and how many."""
        return self._window.at(j)

    def slice_offers(self, i: int) -> tuple[list[int], list[int]]:
        """The Users with arrivals in slice ``i`` of the chunk (sliced chunks only)."""
        assert self._slice is not None
        return self._slice.at(i)

    def arrivals(self, j: int, k: int) -> list[Arrival]:
        """Slice ``k`` of window ``j``: (User, SRs per class, total) for each arrival."""
        if self._cached is None or self._cached[0] != j:
            self._cached = (j, self._window_arrivals(j))
        return self._cached[1][k]

    def window_parts(self, j: int) -> IntArray:
        """(users, classes, slices): window ``j``'s arrivals in each of its slices."""
        s = self.c.slices
        if self.parts is not None:
            return self.parts[:, :, j * s : (j + 1) * s]
        # Split a block of windows at once: windows that need slicing come in runs.
        lo = j - j % _SPLIT_BLOCK
        if self._block is None or self._block[0] != lo:
            self._block = (lo, self._split(slice(lo, min(lo + _SPLIT_BLOCK, self.length))))
        return self._block[1][:, :, (j - lo) * s : (j - lo + 1) * s]

    def _window_arrivals(self, j: int) -> list[list[Arrival]]:
        """Every slice of window ``j`` at once: one conversion to Python lists a window
        instead of four NumPy calls a slice."""
        parts = self.window_parts(j)
        sums = parts.sum(axis=1)  # (users, slices)
        users = np.flatnonzero(sums.any(axis=1))  # only they are converted
        ids: list[int] = users.tolist()
        per_slice: list[list[list[int]]] = parts[users].transpose(2, 0, 1).tolist()
        totals: list[list[int]] = sums[users].T.tolist()
        return [
            [(u, cs, total) for u, cs, total in zip(ids, classes, row, strict=True) if total]
            for classes, row in zip(per_slice, totals, strict=True)
        ]

    def _split(self, span: slice) -> IntArray:
        """(users, classes, windows x slices): each window's arrivals spread over its slices."""
        s = self.c.slices
        counts, first = self.counts[:, :, span], self.first[:, :, span]
        n_users, n_classes, length = counts.shape
        base, rem = np.divmod(counts, s)
        k = np.arange(s).reshape(1, 1, 1, s)
        parts = base[..., None] + (((k - first[..., None]) % s) < rem[..., None])
        return parts.reshape(n_users, n_classes, length * s)


class _Index:
    """For each column of a (users, steps) count matrix: the Users with counts, and them."""

    def __init__(self, totals: IntArray) -> None:
        jj, uu = np.nonzero(totals.T)
        self._users: list[int] = uu.tolist()
        self._counts: list[int] = totals.T[jj, uu].tolist()
        self._bounds: list[int] = np.searchsorted(jj, np.arange(totals.shape[1] + 1)).tolist()

    def at(self, step: int) -> tuple[list[int], list[int]]:
        lo, hi = self._bounds[step], self._bounds[step + 1]
        return self._users[lo:hi], self._counts[lo:hi]


class _World:
    """One engine and its own copy of every User's client."""

    def __init__(self, c: Compiled, engine: Engine, seed: int) -> None:
        self.c = c
        self.engine = engine
        bins = math.ceil(c.windows * c.window / LATENCY_BIN) + 1
        self.rec = Recorder(len(c.classes), bins, c.window / c.slices / 4)
        rng = random.Random(seed)
        self.senders: list[Sender] = []
        self.caps = [line // c.slices for line in c.line]  # most a User sends in a slice
        for user in c.scenario.users:
            if isinstance(user.client, Client):
                self.senders.append(
                    ClientState(
                        user.client,
                        c.classes,
                        c.priority_index,
                        self.rec,
                        rng,
                        quantum=c.window / c.slices,
                    )
                )
            else:
                self.senders.append(OpenLoopState())
        n_users, n_windows = len(self.senders), c.windows
        self.offered = np.zeros((n_users, n_windows), dtype=np.int64)
        self.admitted = np.zeros((n_users, n_windows), dtype=np.int64)
        self.quiet = np.zeros(n_windows, dtype=np.bool_)  # counted in bulk
        self.capacity = np.zeros(n_windows, dtype=np.float64)
        self.active = np.zeros(n_windows, dtype=np.bool_)
        self.backlog = np.zeros((len(c.classes), n_windows), dtype=np.int64)
        self.refused_user = [0] * n_users
        self.refused_capacity = [0] * n_users
        self.priority_quiet = np.zeros(n_users, dtype=np.int64)
        self.drains: list[tuple[float, list[list[float | None]]]] = []
        self.mark: float | None = None
        self.busy: set[int] = set()  # Users with SRs queued
        self.pause_horizon = 0.0  # no User is paused from then on
        self.wall = 0.0
        self._active_now = False
        # The engine reads nothing inside a window: the baseline, or one tick per window.
        self._bulk = isinstance(engine, FcfsEngine) or c.tick_every == c.slices

    # -- a window ------------------------------------------------------------------------

    def window(self, w: int, j: int, chunk: _Chunk, due: Sequence[float]) -> None:
        c, engine = self.c, self.engine
        t = w * c.window
        for cap in due:
            before = engine.capacity
            engine.set_capacity(cap, t)
            if cap > before:  # a recovery: time how the backlogs drain
                if self.mark is not None:
                    self.drains.append((self.mark, [s.drained() for s in self.senders]))
                self.mark = t
                for s in self.senders:
                    s.mark(t)
        self.capacity[w] = engine.capacity
        self._active_now = False
        lat_bin = int(t // LATENCY_BIN)
        ticked = False
        if self._bulk:
            engine.tick(t)
            ticked = True
            self._active_now = engine.active
            if (
                not self.busy
                and t >= self.pause_horizon - _EPS
                and chunk.within_lines[j]
                and engine.fits_window(chunk.window_total[j], chunk.window_most[j], t)
            ):
                ids, ns = chunk.offers(j)
                if ids:
                    engine.admit(ids, ns, t)
                self.quiet[w] = True
                self._end(w)
                return
        dt = c.window / c.slices
        asleep = self._sleep(t, dt, j, chunk) if self.busy else _NOBODY
        quiet: list[int] = []
        for k in range(c.slices):
            now = t + k * dt
            if k % c.tick_every == 0 and not (k == 0 and ticked):
                engine.tick(now)
                if engine.active:
                    self._active_now = True
            if self._calm_slice(j, k, now, chunk):
                quiet.append(k)
            else:
                self._slice(w, k, now, lat_bin, chunk.arrivals(j, k), asleep)
        if len(quiet) == c.slices:
            self.quiet[w] = True
        elif quiet:
            self._count_quietly(w, j, quiet, lat_bin, chunk)
        self._end(w)

    def _sleep(self, t: float, dt: float, j: int, chunk: _Chunk) -> AbstractSet[int]:
        """The Users paused through every slice of window ``j``, their arrivals queued.

        Such a User offers nothing in the window, so slice by slice its arrivals would
        only join its queues, each slice's at that slice's time: they are queued here at
        once, in the same order within each queue, and :meth:`_slice` passes them by.
        (In an outage that is nearly every User, window after window.)
        """
        senders = self.senders
        last = t + (self.c.slices - 1) * dt  # the last slice's time, as window() has it
        asleep = {u for u in self.busy if last < senders[u].paused_until - _EPS}
        if asleep:
            ids = sorted(asleep)
            times = [t + k * dt for k in range(self.c.slices)]
            per_user: list[list[list[int]]] = chunk.window_parts(j)[ids].tolist()
            for u, per_class in zip(ids, per_user, strict=True):
                senders[u].sleep_through(per_class, times)
        return asleep

    def _calm_slice(self, j: int, k: int, now: float, chunk: _Chunk) -> bool:
        """Admit slice ``k``'s arrivals in bulk if nothing in it can be refused."""
        if self.busy or now < self.pause_horizon - _EPS or chunk.parts is None:
            return False
        i = j * self.c.slices + k
        ids, ns = chunk.slice_offers(i)
        if not ids:
            return True
        if not chunk.slice_within_lines[i] or not self.engine.fits(ids, ns, now):
            return False
        self.engine.admit(ids, ns, now)
        return True

    def _count_quietly(
        self, w: int, j: int, slices: list[int], lat_bin: int, chunk: _Chunk
    ) -> None:
        """Count the slices of a window that were admitted in bulk (the rest were not)."""
        pri, clients = self.c.priority_index, self.c.clients
        rec = self.rec
        for k in slices:
            for u, counts, total in chunk.arrivals(j, k):
                self.offered[u, w] += total
                self.admitted[u, w] += total
                if pri >= 0 and counts[pri] and clients[u]:
                    self.priority_quiet[u] += counts[pri]
                    rec.lat_count[lat_bin] += counts[pri]
                    rec.hist[0] = rec.hist.get(0, 0) + counts[pri]

    def _end(self, w: int) -> None:
        self.active[w] = self._active_now
        backlog = self.rec.backlog
        if any(backlog):  # the column starts at zero: most windows have nothing queued
            self.backlog[:, w] = backlog

    def _slice(
        self,
        w: int,
        k: int,
        now: float,
        lat_bin: int,
        arriving: list[Arrival],
        asleep: AbstractSet[int],
    ) -> None:
        """Slice ``k`` of window ``w``, User by User: queues, pauses, decisions (the Users
        ``asleep`` through the window are left out: :meth:`_sleep` queued theirs)."""
        engine, senders, caps, busy = self.engine, self.senders, self.caps, self.busy
        cands = arriving
        if busy:
            awake = busy
            if asleep:
                arriving = [a for a in arriving if a[0] not in asleep]
                awake = busy - asleep
            present = {a[0] for a in arriving}
            cands = arriving + [(u, [], 0) for u in sorted(awake) if u not in present]
        ids, ns = [], []
        for u, counts, total in cands:
            s = senders[u]
            if total:
                s.arrive(counts, total, now)
            n = s.offer(now, caps[u])
            if n:
                ids.append(u)
                ns.append(n)
        if not ids:
            return
        verdicts: list[Verdict] | None = None
        if engine.fits(ids, ns, now):
            engine.admit(ids, ns, now)
        else:
            verdicts = engine.decide(ids, ns, now, w * self.c.slices + k)
        self._settle(w, now, lat_bin, ids, ns, verdicts)

    def _settle(
        self,
        w: int,
        now: float,
        lat_bin: int,
        ids: list[int],
        ns: list[int],
        verdicts: list[Verdict] | None,
    ) -> None:
        senders, offered, admitted, busy = self.senders, self.offered, self.admitted, self.busy
        if verdicts is None:
            verdicts = [(n, None, 0, 200) for n in ns]
        for u, n, (k, retry, reason, _status) in zip(ids, ns, verdicts, strict=True):
            s = senders[u]
            s.settle(n, k, retry, now, lat_bin)
            offered[u, w] += n
            admitted[u, w] += k
            if k < n:
                if reason == _USER:
                    self.refused_user[u] += n - k
                else:
                    self.refused_capacity[u] += n - k
                if s.paused_until > self.pause_horizon:
                    self.pause_horizon = s.paused_until
            if s.size:
                busy.add(u)
            else:
                busy.discard(u)

    # -- bulk windows, folded in per chunk -----------------------------------------------

    def fold(self, chunk: _Chunk) -> None:
        """Add the chunk's bulk-counted windows to the figures."""
        lo, hi = chunk.start, chunk.start + chunk.length
        quiet = self.quiet[lo:hi]
        if not quiet.any():
            return
        # Zeros in the other windows rather than a boolean index: adding them changes
        # nothing, and a masked copy of a (users, windows) block costs ten times more.
        bulk = np.where(quiet, chunk.totals, 0)
        self.offered[:, lo:hi] += bulk
        self.admitted[:, lo:hi] += bulk
        pri = self.c.priority_index
        if pri < 0:
            return
        clients = np.array(self.c.clients, dtype=np.bool_)
        prio = np.where(quiet, chunk.counts[:, pri, :], 0) * clients[:, None]
        self.priority_quiet += prio.sum(axis=1)
        lat_bins = (np.arange(lo, hi) * self.c.window // LATENCY_BIN).astype(np.int64)
        per_minute = np.bincount(lat_bins - lat_bins[0], weights=prio.sum(axis=0))
        rec = self.rec
        for m, count in enumerate(per_minute.tolist()):
            if count:
                rec.lat_count[lat_bins[0] + m] += int(count)
        total = int(prio.sum())
        if total:
            rec.hist[0] = rec.hist.get(0, 0) + total

    def result(self, demand: IntArray, arrived_by_class: IntArray) -> Run:
        c, rec, senders, engine = self.c, self.rec, self.senders, self.engine
        if self.mark is not None:
            self.drains.append((self.mark, [s.drained() for s in senders]))
        queued_by_class = np.zeros(len(c.classes), dtype=np.int64)
        for s in senders:
            q = s.queued_by_class()
            if q:
                queued_by_class += np.array(q, dtype=np.int64)
        return Run(
            mode=engine.mode,
            label=engine.label,
            compiled=c,
            demand=demand,
            offered=self.offered,
            admitted=self.admitted,
            capacity=self.capacity,
            active=self.active,
            backlog=self.backlog,
            refused_user=np.array(self.refused_user, dtype=np.int64),
            refused_capacity=np.array(self.refused_capacity, dtype=np.int64),
            lost=np.array([s.lost for s in senders], dtype=np.int64),
            queued=np.array([s.size for s in senders], dtype=np.int64),
            priority_admitted=self.priority_quiet
            + np.array([s.priority_admitted for s in senders], dtype=np.int64),
            priority_wait_max=np.array([s.priority_wait_max for s in senders], dtype=np.float64),
            latency_count=np.array(rec.lat_count, dtype=np.int64),
            latency_sum=np.array(rec.lat_sum, dtype=np.float64),
            latency_max=np.array(rec.lat_max, dtype=np.float64),
            latency_hist={k * rec.resolution: v for k, v in sorted(rec.hist.items())},
            class_count=arrived_by_class - queued_by_class,
            class_wait=np.array(rec.class_wait, dtype=np.float64),
            drains=self.drains,
            wall=self.wall,
            decisions=engine.decisions,
            counted=engine.counted,
        )


def simulate(
    compiled: Compiled,
    *,
    exact: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[Run, Run]:
    """Run a compiled scenario with traffic management and without it, in lockstep.

    ``exact=True`` sends every offer through ``Gate.decide`` (slower; the results are the
    same, which a test checks). ``on_progress`` is called with a number of windows done.
    """
    c = compiled
    scenario = c.scenario
    users = scenario.users
    quiet = _Quiet()
    logging.getLogger("srtm.gate").addFilter(quiet)
    tm = GateEngine(scenario.policy, [(u.id, u.duis_version) for u in users], exact=exact)
    fcfs = FcfsEngine(scenario.policy)
    worlds = [_World(c, tm, scenario.seed + 1), _World(c, fcfs, scenario.seed + 1)]
    rng = np.random.default_rng(scenario.seed)
    demand = np.zeros((len(users), c.windows), dtype=np.int64)
    clients = np.array(c.clients, dtype=np.bool_)
    arrived_by_class = np.zeros(len(c.classes), dtype=np.int64)
    events = list(c.events)
    clock = time.perf_counter
    report = max(1, min(1000, c.windows // 100))
    pending = 0
    try:
        for start in range(0, c.windows, _CHUNK):
            began = clock()
            chunk = _Chunk(c, start, min(_CHUNK, c.windows - start), rng)
            demand[:, start : start + chunk.length] = chunk.totals
            arrived_by_class += chunk.counts[clients].sum(axis=(0, 2))
            shared = (clock() - began) / len(worlds)
            for world in worlds:
                world.wall += shared
            for j in range(chunk.length):
                w = start + j
                due: list[float] = []
                while events and events[0][0] <= w:
                    due.append(events.pop(0)[1])
                for world in worlds:
                    began = clock()
                    world.window(w, j, chunk, due)
                    world.wall += clock() - began
                pending += 1
                if pending >= report and on_progress is not None:
                    on_progress(pending)
                    pending = 0
            for world in worlds:
                began = clock()
                world.fold(chunk)
                world.wall += clock() - began
        if pending and on_progress is not None:
            on_progress(pending)
        return worlds[0].result(demand, arrived_by_class), worlds[1].result(
            demand, arrived_by_class
        )
    finally:
        tm.close()
        fcfs.close()
        logging.getLogger("srtm.gate").removeFilter(quiet)


class _Quiet(logging.Filter):
    """Drops the gate's "traffic management engaged/released" warnings during a run: the
    run records every engagement, and a simulated day would print hundreds of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("srtm: traffic management")
