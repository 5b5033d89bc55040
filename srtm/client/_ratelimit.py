"""Reading the gateway's RateLimit header fields, tolerantly.

The gateway sends the structured-field form of draft-ietf-httpapi-ratelimit-headers::

    RateLimit-Policy: "smets2";q=40;w=1
    RateLimit: "smets2";r=12;t=1

Older drafts are accepted too: the ``RateLimit-Limit`` / ``RateLimit-Remaining`` /
``RateLimit-Reset`` triple (with an optional ``10;w=1`` policy in the limit), the
dictionary form ``RateLimit: limit=10, remaining=3, reset=1`` and a bare
``RateLimit-Policy: 10;w=1``; and, when none of those is there, the widespread
``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` triple (reset in seconds, or an epoch
time as GitHub sends it). Several policies: each is kept (``RateLimitInfo.policies``);
the short windows (up to ``SHORT_WINDOW``) set the pace, the most restrictive winning,
and a long window (a daily quota) is a budget. Anything malformed is ignored, never
raised: pacing is advice, not a reason to fail an SR.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["SHORT_WINDOW", "RateLimitInfo", "RateLimitPolicy", "parse_ratelimit"]

#: Larger numbers than this are not a rate anyone means; ignore them.
_MAX_VALUE = 10**9
#: An ``X-RateLimit-Reset`` at least this large is an epoch time (GitHub's form), not seconds.
_EPOCH_FROM = 10**9


#: Policies with windows up to this long set the pace; longer ones are budgets.
SHORT_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """One quota policy the gateway named (each field None if unknown).

    ``quota`` requests per ``window`` seconds; ``remaining`` requests left in the current
    window, which resets in ``reset`` seconds.
    """

    name: str | None = None
    quota: int | None = None
    window: float | None = None
    remaining: int | None = None
    reset: float | None = None

    @property
    def rate(self) -> float | None:
        """The quota as a rate (SR/s), when both quota and window are known."""
        if self.quota is None or not self.window:
            return None
        return self.quota / self.window

    @property
    def short(self) -> bool:
        """Whether this policy sets the pace (a window of at most ``SHORT_WINDOW``)."""
        return self.window is not None and 0 < self.window <= SHORT_WINDOW


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What the gateway said about the User's quotas (each field None if unknown).

    ``policies`` lists every policy named. The other fields summarise them: ``pool``,
    ``quota`` and ``window`` are the most restrictive short-window policy (the one that
    sets the pace; the most restrictive of all when none is short), ``remaining`` and
    ``reset`` the policy with the least left.
    """

    pool: str | None = None
    quota: int | None = None
    window: float | None = None
    remaining: int | None = None
    reset: float | None = None
    policies: tuple[RateLimitPolicy, ...] = field(default=(), compare=False)

    @property
    def rate(self) -> float | None:
        """The summary policy's quota as a rate (SR/s), when quota and window are known."""
        if self.quota is None or not self.window:
            return None
        return self.quota / self.window

    @property
    def pace(self) -> float | None:
        """The rate to pace at: the lowest among the short-window policies (SR/s).

        A long window (a daily quota) is a budget, not a pace: spreading it evenly would
        stall the User; the pacer holds only when its ``remaining`` reaches 0.
        """
        rates = [r for p in self.policies if p.short and (r := p.rate) is not None and r > 0]
        return min(rates) if rates else None


def _split(text: str, sep: str) -> Iterator[str]:
    """Split on ``sep`` outside double quotes (structured-field strings)."""
    start, quoted, escaped = 0, False, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            yield text[start:i]
            start = i + 1
    yield text[start:]


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if value <= _MAX_VALUE else None


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text or len(text) > 16 or text[0] in "+-":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 <= value <= _MAX_VALUE else None


@dataclass(frozen=True, slots=True)
class _Item:
    name: str | None
    bare: str
    params: Mapping[str, str]


def _items(value: str) -> Iterator[_Item]:
    for member in _split(value, ","):
        parts = list(_split(member, ";"))
        bare = parts[0].strip()
        params: dict[str, str] = {}
        for part in parts[1:]:
            key, _, val = part.partition("=")
            key = key.strip().lower()
            if key:
                params[key] = val.strip() if _ else "1"
        name = _unquote(bare) if bare.startswith('"') else None
        yield _Item(name=name, bare=bare, params=params)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    try:
        value = headers.get(name)
    except Exception:
        return None
    return value if isinstance(value, str) else None


def parse_ratelimit(
    headers: Mapping[str, str], *, now: float | None = None
) -> RateLimitInfo | None:
    """The RateLimit fields of a response, or None when there are none worth reading.

    ``now`` is the wall time (epoch seconds) an ``X-RateLimit-Reset`` epoch time is
    measured from (default: ``time.time()``).
    """
    try:
        return _parse(headers, time.time() if now is None else now)
    except Exception:  # tolerance is the contract: a bad header is ignored, never raised
        return None


_Policies = dict[str | None, tuple[int, float | None]]


def _parse(headers: Mapping[str, str], now: float) -> RateLimitInfo | None:
    policies: _Policies = {}
    limits: _Policies = {}

    policy_field = _header(headers, "ratelimit-policy")
    if policy_field:
        for item in _items(policy_field):
            q = _int(item.params.get("q"))
            if q is None and item.name is None:
                q = _int(item.bare)  # older draft: 10;w=1
            w = _seconds(item.params.get("w"))
            if q is not None and (w is None or w > 0):
                policies.setdefault(item.name, (q, w))

    limit_field = _header(headers, "ratelimit")
    if limit_field:
        old: dict[str, str] = {}
        for item in _items(limit_field):
            if item.name is None and "=" in item.bare:  # dictionary form: limit=10, ...
                key, _, val = item.bare.partition("=")
                old[key.strip().lower()] = val
                continue
            r = _int(item.params.get("r"))
            if r is not None:
                limits.setdefault(item.name, (r, _seconds(item.params.get("t"))))
        if old:
            _triple(old.get("limit"), old.get("remaining"), old.get("reset"), policies, limits)

    _triple(
        _header(headers, "ratelimit-limit"),
        _header(headers, "ratelimit-remaining"),
        _header(headers, "ratelimit-reset"),
        policies,
        limits,
    )
    if not policies and not limits:
        # The widespread pre-standard triple, read only when nothing standard is there.
        _triple(
            _header(headers, "x-ratelimit-limit"),
            _header(headers, "x-ratelimit-remaining"),
            _epoch_or_seconds(_header(headers, "x-ratelimit-reset"), now),
            policies,
            limits,
        )
    if not policies and not limits:
        return None

    named = [
        RateLimitPolicy(
            name=name,
            quota=policies[name][0] if name in policies else None,
            window=policies[name][1] if name in policies else None,
            remaining=limits[name][0] if name in limits else None,
            reset=limits[name][1] if name in limits else None,
        )
        for name in [*policies, *(n for n in limits if n not in policies)]
    ]

    def restrictive(p: RateLimitPolicy) -> float:
        rate = p.rate
        return rate if rate is not None else math.inf

    summary: RateLimitPolicy | None = None
    quoted = [p for p in named if p.quota is not None]
    if quoted:
        short = [p for p in quoted if p.short]
        summary = min(short or quoted, key=restrictive)
    least: RateLimitPolicy | None = None
    counted = [p for p in named if p.remaining is not None]
    if counted:
        least = min(counted, key=lambda p: (p.remaining, -(p.reset or 0.0)))
    return RateLimitInfo(
        pool=summary.name if summary is not None else least.name if least is not None else None,
        quota=summary.quota if summary is not None else None,
        window=summary.window if summary is not None else None,
        remaining=least.remaining if least is not None else None,
        reset=least.reset if least is not None else None,
        policies=tuple(named),
    )


def _epoch_or_seconds(text: str | None, now: float) -> str | None:
    """``X-RateLimit-Reset`` is seconds for some servers, an epoch time for others."""
    if text is None:
        return None
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit() and len(stripped) <= 12:
        value = int(stripped)
        if value >= _EPOCH_FROM:
            return f"{max(0.0, value - now):.3f}"
    return text


def _triple(
    limit: str | None,
    remaining: str | None,
    reset: str | None,
    policies: _Policies,
    limits: _Policies,
) -> None:
    if limit:
        # "10" or, in draft 03, "10, 10;w=1, 1000;w=3600": the limit, then its policies.
        items = list(_items(limit))
        quota = _int(items[0].bare)
        window = None
        for item in items:
            w = _seconds(item.params.get("w"))
            if w is not None and w > 0 and _int(item.bare) == quota:
                window = w
                break
        if quota is not None:
            policies.setdefault(None, (quota, window))
    left = _int(remaining)
    if left is not None:
        limits.setdefault(None, (left, _seconds(reset)))
