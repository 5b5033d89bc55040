"""Retry-After, backoff and the retry budget: the decisions behind every retry.

``RetryAfterWait`` is a tenacity wait strategy that reads the last outcome. When the
gateway said when to come back (``Retry-After``: delta-seconds or an HTTP-date, parsed
or the lenient decimal and list forms servers send), that is a floor, and a little jitter
goes on top so that thousands of clients throttled in the same second do not return in
the same second. When it did not say, or said something unusable (negative, garbage),
the wait is exponential backoff with full jitter, capped. A value above ``cap`` is capped
and reported (``WaitDecision.capped``): the client never waits a day because a header
said so, and it never retries that SR early either (it gives up with ``RetryAfterTooLongError``).

It works with plain tenacity too::

    for attempt in tenacity.Retrying(
        wait=RetryAfterWait(),
        retry=tenacity.retry_if_result(lambda r: r.status_code == 429),
        stop=tenacity.stop_after_attempt(5),
    ): ...
"""

from __future__ import annotations

import calendar
import math
import random as _random
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from tenacity.wait import wait_base

from srtm.client._clock import Clock, SystemClock
from srtm.client._refusal import RefusalRule

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from tenacity import RetryCallState

__all__ = [
    "RetryAfterWait",
    "RetryBudget",
    "RetryPolicy",
    "WaitDecision",
    "parse_retry_after",
]

# ---------------------------------------------------------------------------------------
# Parsing Retry-After (RFC 9110 section 10.2.3): delay-seconds / HTTP-date

_OWS = " \t"
#: delay-seconds, or the lenient decimal form (ASCII digits only; no sign, no exponent).
_DECIMAL = re.compile(r"([0-9]+)(?:\.([0-9]*))?", re.ASCII)
_DAY_NAME = re.compile(
    r"Mon|Tue|Wed|Thu|Fri|Sat|Sun|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday",
    re.ASCII,
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MON = r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
# IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
_IMF = re.compile(rf"{_DAY}, ([0-9]{{2}}) {_MON} ([0-9]{{4}}) {_TIME} GMT", re.ASCII)
# obsolete RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
_RFC850 = re.compile(rf"{_LONG_DAY}, ([0-9]{{2}})-{_MON}-([0-9]{{2}}) {_TIME} GMT", re.ASCII)
# obsolete asctime: Sun Nov  6 08:49:37 1994
_ASCTIME = re.compile(rf"{_DAY} {_MON} ([ 0-9][0-9]) {_TIME} ([0-9]{{4}})", re.ASCII)
#: More digits than this is not a delay anyone means: treat it as "forever" (capped).
_MAX_DIGITS = 12


def _timestamp(year: int, month: int, day: int, hh: int, mm: int, ss: int) -> float | None:
    if not (1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if hh > 23 or mm > 59 or ss > 60:  # 60: a leap second is a valid HTTP-date second
        return None
    return float(calendar.timegm((year, month, day, hh, mm, ss, 0, 0, 0)))


def _parse_http_date(value: str, now: float) -> float | None:
    if m := _IMF.fullmatch(value):
        day, mon, year, hh, mm, ss = m.groups()
        return _timestamp(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss))
    if m := _RFC850.fullmatch(value):
        day, mon, yy, hh, mm, ss = m.groups()
        # RFC 9110: a two-digit year more than 50 years in the future is in the past century.
        this_year = _year_of(now)
        year = (this_year // 100) * 100 + int(yy)
        if year > this_year + 50:
            year -= 100
        return _timestamp(year, _MONTHS[mon], int(day), int(hh), int(mm), int(ss))
    if m := _ASCTIME.fullmatch(value):
        mon, day, hh, mm, ss, year = m.groups()
        return _timestamp(int(year), _MONTHS[mon], int(day.strip()), int(hh), int(mm), int(ss))
    return None


def _year_of(timestamp: float) -> int:
    return time.gmtime(max(0.0, min(timestamp, 253402300799.0))).tm_year


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None when absent or unusable.

    ``now`` is the wall time (epoch seconds) an HTTP-date is measured from. The two forms
    of RFC 9110: delay-seconds (ASCII digits) and an HTTP-date (IMF-fixdate, or the
    obsolete RFC 850 and asctime forms); a date in the past means 0. And the lenient forms
    servers really send, each read so that the client never comes back early: a decimal
    (``1.5`` means at least 1.5 s) and a list (a repeated field, ``2, 3``: the largest of
    its usable members). Signs, exponents, other digits and garbage are unusable (None):
    the caller backs off. A delay too long to be meant comes back as ``math.inf``.
    """
    if value is None:
        return None
    text = value.strip(_OWS)
    if not text:
        return None
    single = _parse_one(text, now)
    if single is not None or "," not in text:
        return single
    found = [d for d in (_parse_one(member, now) for member in _members(text)) if d is not None]
    return max(found) if found else None


def _parse_one(text: str, now: float) -> float | None:
    text = text.strip(_OWS)
    if m := _DECIMAL.fullmatch(text):
        whole, fraction = m.groups()
        digits = whole.lstrip("0") or "0"
        if len(digits) > _MAX_DIGITS:
            return math.inf
        # Nine decimals, rounded up: a floor is never shortened, not even by a nanosecond.
        nanos = int((fraction or "").ljust(9, "0")[:9])
        if fraction and fraction[9:].strip("0"):
            nanos += 1
        return float(int(digits)) + nanos / 1e9
    when = _parse_http_date(text, now)
    if when is None:
        return None
    return max(0.0, when - now)


def _members(text: str) -> list[str]:
    """Split a list on commas, keeping an HTTP-date's own comma ("Sun, 06 Nov ...")."""
    parts = text.split(",")
    members: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i].strip(_OWS)
        if _DAY_NAME.fullmatch(part) and i + 1 < len(parts):
            members.append(part + "," + parts[i + 1])
            i += 2
        else:
            members.append(part)
            i += 1
    return members


# ---------------------------------------------------------------------------------------
# The wait strategy


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitDecision:
    """What a wait strategy decided, and why.

    ``delay`` is the whole wait (floor plus jitter). ``source`` is ``"retry-after"`` when
    the gateway's header set the floor, ``"backoff"`` otherwise. ``requested`` is what the
    header asked for in seconds (None without a usable header); ``capped`` says it was
    above the cap, so ``floor`` is the cap instead.
    """

    delay: float
    floor: float
    jitter: float
    source: Literal["retry-after", "backoff"]
    raw: str | None
    requested: float | None
    capped: bool


def _random_source(rng: _random.Random | Callable[[], float] | None) -> Callable[[], float]:
    if rng is None:
        return _random.random
    if isinstance(rng, _random.Random):
        return rng.random
    return rng


def retry_after_header(outcome: object) -> str | None:
    """The ``Retry-After`` value of a response-like outcome (or an error carrying one)."""
    response = getattr(outcome, "response", None) if isinstance(outcome, BaseException) else outcome
    headers: Mapping[str, str] | None = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        return headers.get("retry-after")
    except Exception:  # a headers object that is not a mapping: no usable header
        return None


class RetryAfterWait(wait_base):
    """Wait at least as long as ``Retry-After`` says, plus jitter; else back off.

    - ``Retry-After`` usable: ``floor = min(requested, cap)``, plus uniform jitter in
      ``[0, max(jitter, jitter_ratio * floor))``.
    - absent or unusable: full-jitter exponential backoff,
      ``uniform(0, min(backoff_max, backoff_initial * 2 ** (attempt - 1)))``.

    ``clock`` gives the wall time for HTTP-dates; ``rng`` the random source (a
    ``random.Random`` or a function returning floats in ``[0, 1)``).
    """

    def __init__(
        self,
        *,
        cap: float = 300.0,
        jitter: float = 1.0,
        jitter_ratio: float = 0.1,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        clock: Clock | None = None,
        rng: _random.Random | Callable[[], float] | None = None,
    ) -> None:
        for name, value in (
            ("cap", cap),
            ("backoff_initial", backoff_initial),
            ("backoff_max", backoff_max),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a positive number of seconds, got {value!r}")
        for name, value in (("jitter", jitter), ("jitter_ratio", jitter_ratio)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be zero or more, got {value!r}")
        self.cap: float = float(cap)
        self.jitter: float = float(jitter)
        self.jitter_ratio: float = float(jitter_ratio)
        self.backoff_initial: float = float(backoff_initial)
        self.backoff_max: float = float(backoff_max)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._random = _random_source(rng)

    def _uniform(self, upper: float) -> float:
        # random() is in [0, 1); clamp anyway, a custom source may misbehave.
        return min(max(self._random(), 0.0), 1.0) * upper

    def backoff_ceiling(self, attempt: int) -> float:
        """The upper bound of the full-jitter backoff after ``attempt`` attempts."""
        exponent = max(0, attempt - 1)
        if exponent * math.log(2.0) >= math.log(self.backoff_max / self.backoff_initial):
            return self.backoff_max
        return min(self.backoff_max, self.backoff_initial * 2.0**exponent)

    def decide(self, retry_after: str | None, attempt: int) -> WaitDecision:
        """The wait after ``attempt`` attempts, the last answered with ``retry_after``."""
        requested = parse_retry_after(retry_after, now=self.clock.time())
        if requested is None:
            delay = self._uniform(self.backoff_ceiling(attempt))
            return WaitDecision(
                delay=delay,
                floor=0.0,
                jitter=delay,
                source="backoff",
                raw=retry_after,
                requested=None,
                capped=False,
            )
        capped = requested > self.cap
        floor = self.cap if capped else requested
        jitter = self._uniform(max(self.jitter, self.jitter_ratio * floor))
        return WaitDecision(
            delay=floor + jitter,
            floor=floor,
            jitter=jitter,
            source="retry-after",
            raw=retry_after,
            requested=requested,
            capped=capped,
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        header: str | None = None
        if outcome is not None:
            value: Any = outcome.exception() if outcome.failed else outcome.result()
            header = retry_after_header(value)
        decision = self.decide(header, retry_state.attempt_number)
        note = getattr(retry_state, "note_wait", None)
        if callable(note):
            note(decision)
        return decision.delay


# ---------------------------------------------------------------------------------------
# The retry budget


class RetryBudget:
    """A token bucket of retries, so an outage does not multiply traffic.

    Each first attempt earns ``ratio`` of a retry and every second earns ``per_second``,
    up to ``burst`` tokens; each retry spends one. With the defaults, after an initial
    allowance, retries add at most about 20% to the traffic (plus a trickle). Not
    thread-safe on its own: the client calls it under its lock.
    """

    __slots__ = ("_last", "_tokens", "burst", "per_second", "ratio")

    def __init__(self, *, ratio: float, per_second: float, burst: float, now: float) -> None:
        self.ratio = ratio
        self.per_second = per_second
        self.burst = burst
        self._tokens = burst
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
            self._last = now

    def earn(self, now: float) -> None:
        """A first attempt was made."""
        self._refill(now)
        self._tokens = min(self.burst, self._tokens + self.ratio)

    def try_spend(self, now: float) -> bool:
        """Take one retry, if there is one to take."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def tokens(self, now: float) -> float:
        """Retries available now."""
        self._refill(now)
        return self._tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How the client retries SRs the gateway did not process.

    ``max_attempts`` sends at most per SR. ``max_retry_after``: the longest wait a
    ``Retry-After`` may impose; above it the User is paused for this long and the SR is
    handed back with ``RetryAfterTooLongError``. ``jitter``/``jitter_ratio``: the spread
    added on top of ``Retry-After`` (uniform up to ``max(jitter, jitter_ratio * wait)``).
    ``backoff_initial``/``backoff_max``: full-jitter exponential backoff when the gateway
    gives no usable ``Retry-After`` (or cannot be reached). The budget: each first attempt
    earns ``budget_ratio`` retries, each second ``budget_per_second``, at most
    ``budget_burst`` banked. ``deadline``: a default per-SR deadline (seconds after
    submission) for SRs that set none; None for no deadline. ``refusal``: which answers
    mean "not processed, the User must wait" (``RefusalRule``; the default fits the DCC
    gateway: 429, 503 with ``Retry-After``, 503 with srtm's marker).
    """

    max_attempts: int = 20
    max_retry_after: float = 300.0
    jitter: float = 1.0
    jitter_ratio: float = 0.1
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    budget_ratio: float = 0.2
    budget_per_second: float = 10.0
    budget_burst: float = 100.0
    deadline: float | None = None
    refusal: RefusalRule = field(default_factory=RefusalRule)

    def __post_init__(self) -> None:
        if not isinstance(self.refusal, RefusalRule):
            raise TypeError(f"refusal: must be a RefusalRule, got {type(self.refusal).__name__}")
        if isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ValueError(f"max_attempts: must be at least 1, got {self.max_attempts!r}")
        for name in ("max_retry_after", "backoff_initial", "backoff_max", "budget_burst"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a positive number, got {value!r}")
        for name in ("jitter", "jitter_ratio", "budget_ratio", "budget_per_second"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be zero or more, got {value!r}")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max: must be at least backoff_initial")
        if self.deadline is not None and not (math.isfinite(self.deadline) and self.deadline > 0):
            raise ValueError(
                f"deadline: must be a positive number of seconds, got {self.deadline!r}"
            )

    def wait_strategy(
        self, *, clock: Clock, rng: _random.Random | Callable[[], float] | None
    ) -> RetryAfterWait:
        """The ``RetryAfterWait`` these settings describe."""
        return RetryAfterWait(
            cap=self.max_retry_after,
            jitter=self.jitter,
            jitter_ratio=self.jitter_ratio,
            backoff_initial=self.backoff_initial,
            backoff_max=self.backoff_max,
            clock=clock,
            rng=rng,
        )
