"""Rates over time: how many SR/s a User offers at each moment of the simulated day.

A :class:`Curve` maps an array of times (seconds from the start of the run, 0 being
00:00) to rates in SR/s. Curves add up and scale, so a User's demand is written as a sum::

    daily(120_000) + burst(start=at("01:20"), duration=600, rate=5_000)

Any function from a NumPy array of times to an array of rates becomes a curve with
:func:`function`. The reference day's shape (:func:`daily`) puts 70% of a day's SRs
between 00:00 and 06:00, peaking about 01:30, and the rest over the working day and
evening, as the seed documents describe the DCC's March 2020 traffic.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "DAY",
    "Curve",
    "at",
    "burst",
    "constant",
    "daily",
    "daytime",
    "function",
    "night",
    "piecewise",
]

FloatArray = npt.NDArray[np.float64]

#: Seconds in a day.
DAY = 86_400.0


def at(clock: str) -> float:
    """Seconds from midnight of a clock time: ``at("01:30") == 5400.0`` (also HH:MM:SS)."""
    parts = clock.strip().split(":")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"a clock time is HH:MM or HH:MM:SS, got {clock!r}")
    h, m, s = (int(p) for p in [*parts, "0"][:3])
    if m >= 60 or s >= 60:
        raise ValueError(f"minutes and seconds must be below 60, got {clock!r}")
    return float(h * 3600 + m * 60 + s)


class Curve:
    """A rate in SR/s as a function of time; add curves with ``+``, scale with ``*``."""

    def rate(self, t: FloatArray) -> FloatArray:
        """The rate (SR/s, >= 0) at each of the times ``t`` (seconds)."""
        raise NotImplementedError

    def __call__(self, t: FloatArray) -> FloatArray:
        return self.rate(t)

    def __add__(self, other: Curve | float) -> Curve:
        return _Sum((self, _curve(other)))

    def __radd__(self, other: Curve | float) -> Curve:
        return _Sum((_curve(other), self))

    def __mul__(self, factor: float) -> Curve:
        return _Scaled(self, _factor(factor))

    def __rmul__(self, factor: float) -> Curve:
        return _Scaled(self, _factor(factor))

    def total(self, start: float = 0.0, end: float = DAY, step: float = 1.0) -> float:
        """SRs over ``[start, end)``: the rate summed at the middle of each ``step``."""
        t = np.arange(start, end, step, dtype=np.float64) + step / 2
        return float(np.sum(self.rate(t)) * step)

    def peak(self, start: float = 0.0, end: float = DAY, over: float = 60.0) -> float:
        """The highest mean rate over any aligned ``over``-second span (SR/s)."""
        t = np.arange(start, end, 1.0, dtype=np.float64) + 0.5
        rates = self.rate(t)
        n = int(over)
        usable = len(rates) // n * n
        return float(rates[:usable].reshape(-1, n).mean(axis=1).max()) if usable else 0.0


def _factor(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"a curve scales by a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"a curve scales by a factor >= 0, got {value!r}")
    return float(value)


def _curve(value: Curve | float) -> Curve:
    if isinstance(value, Curve):
        return value
    return constant(value)


@dataclass(frozen=True, slots=True)
class _Sum(Curve):
    parts: tuple[Curve, ...]

    def rate(self, t: FloatArray) -> FloatArray:
        out = np.zeros_like(t, dtype=np.float64)
        for part in self.parts:
            out += part.rate(t)
        return out


@dataclass(frozen=True, slots=True)
class _Scaled(Curve):
    base: Curve
    factor: float

    def rate(self, t: FloatArray) -> FloatArray:
        return self.base.rate(t) * self.factor


@dataclass(frozen=True, slots=True)
class _Constant(Curve):
    value: float

    def rate(self, t: FloatArray) -> FloatArray:
        return np.full_like(t, self.value, dtype=np.float64)


def constant(rate: float) -> Curve:
    """``rate`` SR/s all day."""
    return _Constant(_rate(rate))


@dataclass(frozen=True, slots=True)
class _Burst(Curve):
    start: float
    end: float
    value: float

    def rate(self, t: FloatArray) -> FloatArray:
        return np.where((t >= self.start) & (t < self.end), self.value, 0.0)


def burst(*, start: float, duration: float, rate: float) -> Curve:
    """``rate`` SR/s from ``start`` for ``duration`` seconds, 0 otherwise."""
    if not (math.isfinite(start) and start >= 0):
        raise ValueError(f"burst start must be a time >= 0 s, got {start!r}")
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"burst duration must be > 0 s, got {duration!r}")
    return _Burst(float(start), float(start + duration), _rate(rate))


@dataclass(frozen=True, slots=True)
class _Piecewise(Curve):
    times: tuple[float, ...]
    rates: tuple[float, ...]
    period: float | None

    def rate(self, t: FloatArray) -> FloatArray:
        x = np.mod(t, self.period) if self.period else t
        return np.interp(x, self.times, self.rates).astype(np.float64)


def piecewise(points: Sequence[tuple[float, float]], *, period: float | None = None) -> Curve:
    """Straight lines between ``(time, rate)`` points; flat before the first and after the last.

    With ``period`` (for example :data:`DAY`) the curve repeats, times taken modulo it.
    """
    if len(points) < 1:
        raise ValueError("piecewise needs at least one (time, rate) point")
    times = [float(p[0]) for p in points]
    if any(b < a for a, b in itertools.pairwise(times)):
        raise ValueError("piecewise points must be in time order")
    if period is not None and not (math.isfinite(period) and period > 0):
        raise ValueError(f"period must be > 0 s, got {period!r}")
    return _Piecewise(tuple(times), tuple(_rate(p[1]) for p in points), period)


@dataclass(frozen=True, slots=True)
class _Function(Curve):
    fn: Callable[[FloatArray], FloatArray]

    def rate(self, t: FloatArray) -> FloatArray:
        out = np.asarray(self.fn(t), dtype=np.float64)
        if out.shape != t.shape:
            out = np.broadcast_to(out, t.shape).astype(np.float64)
        if not np.all(np.isfinite(out)) or np.any(out < 0):
            raise ValueError(f"the curve {self.fn!r} gave a rate that is negative or not finite")
        return out


def function(fn: Callable[[FloatArray], FloatArray]) -> Curve:
    """A curve from any function of a NumPy array of times (s) to rates (SR/s, >= 0)."""
    if not callable(fn):
        raise TypeError(f"function() needs a callable, got {fn!r}")
    return _Function(fn)


def shared_rate(curve: Curve, t: FloatArray, memo: dict[int, FloatArray]) -> FloatArray:
    """``curve.rate(t)``, reusing the rates of sub-curves already evaluated at ``t``.

    A cache for one array of times: ``memo`` maps ``id(curve)`` to its rates at ``t``
    and is valid only for that ``t`` (the caller starts a new one for other times, and
    keeps the curves alive meanwhile). A reference User's five classes all scale the
    same shifted night and day curves, so each is interpolated once, not five times.
    Sums and factors are applied exactly as :meth:`Curve.rate` applies them (same
    operations, same order), so the rates are the same to the last bit. The cached
    arrays are never written to.
    """
    if isinstance(curve, _Sum):
        out = np.zeros_like(t, dtype=np.float64)
        for part in curve.parts:
            out += shared_rate(part, t, memo)
        return out
    if isinstance(curve, _Scaled):
        return shared_rate(curve.base, t, memo) * curve.factor
    found = memo.get(id(curve))
    if found is None:
        found = memo[id(curve)] = curve.rate(t)
    return found


def _rate(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a rate is a number of SR/s, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"a rate must be finite and >= 0 SR/s, got {value!r}")
    return float(value)


# -- the reference day -----------------------------------------------------------------

_H = 3600.0
_EDGE = 1e-3  # a step: two knots this close together
# Relative rates at clock hours. Night (00:00-06:00): the Users' scheduled bulk work starts
# at midnight and peaks about 01:30. Day (06:00-24:00): working hours and the evening.
_NIGHT_KNOTS = ((0.0, 120.0), (0.5, 225.0), (1.5, 275.0), (2.5, 205.0), (4.0, 120.0), (6.0, 75.0))
_DAY_KNOTS = (
    (6.0, 12.0),
    (7.5, 20.0),
    (9.0, 30.0),
    (12.0, 30.0),
    (16.0, 27.0),
    (17.5, 34.0),
    (20.0, 32.0),
    (22.0, 20.0),
    (24.0, 10.0),
)


def _unit(knots: Sequence[tuple[float, float]], lo: float, hi: float) -> _Piecewise:
    """A daily curve that is ``knots`` inside [lo, hi) hours and 0 outside, integrating to 1."""
    points = [(lo * _H - _EDGE, 0.0)] if lo > 0 else []
    points += [(h * _H, r) for h, r in knots]
    if hi < 24:
        points[-1] = (hi * _H - _EDGE, points[-1][1])
        points.append((hi * _H, 0.0))
    points = [(0.0, 0.0), *points] if lo > 0 else points
    if hi < 24:
        points.append((DAY, 0.0))
    shape = _Piecewise(tuple(p[0] for p in points), tuple(p[1] for p in points), DAY)
    area = shape.total(0.0, DAY, 1.0)
    return _Piecewise(shape.times, tuple(r / area for r in shape.rates), DAY)


_NIGHT = _unit(_NIGHT_KNOTS, 0.0, 6.0)
_DAYTIME = _unit(_DAY_KNOTS, 6.0, 24.0)


@dataclass(frozen=True, slots=True)
class _Shifted(Curve):
    base: Curve
    shift: float

    def rate(self, t: FloatArray) -> FloatArray:
        return self.base.rate(t - self.shift)


def night(volume: float, *, shift: float = 0.0) -> Curve:
    """``volume`` SRs a day, all between 00:00 and 06:00 in the reference night's shape."""
    curve: Curve = _Scaled(_NIGHT, _rate(volume))
    return _Shifted(curve, float(shift)) if shift else curve


def daytime(volume: float, *, shift: float = 0.0) -> Curve:
    """``volume`` SRs a day, all between 06:00 and 24:00 in the reference day's shape."""
    curve: Curve = _Scaled(_DAYTIME, _rate(volume))
    return _Shifted(curve, float(shift)) if shift else curve


def daily(volume: float, *, night_share: float = 0.7, shift: float = 0.0) -> Curve:
    """``volume`` SRs a day in the reference shape, ``night_share`` of them at night.

    ``shift`` moves the whole day later by that many seconds (wrapping at midnight), so
    Users need not all peak in the same minute.
    """
    if not 0 <= night_share <= 1:
        raise ValueError(f"night_share must be in [0, 1], got {night_share!r}")
    return night(volume * night_share, shift=shift) + daytime(
        volume * (1 - night_share), shift=shift
    )
