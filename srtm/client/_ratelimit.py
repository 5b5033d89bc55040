"""Reading the gateway's RateLimit header fields, tolerantly.

The gateway sends the structured-field form of draft-ietf-httpapi-ratelimit-headers::

    RateLimit-Policy: "smets2";q=40;w=1
    RateLimit: "smets2";r=12;t=1

Older drafts are accepted too: the ``RateLimit-Limit`` / ``RateLimit-Remaining`` /
``RateLimit-Reset`` triple (with an optional ``10;w=1`` policy in the limit), the
dictionary form ``RateLimit: limit=10, remaining=3, reset=1`` and a bare
``RateLimit-Policy: 10;w=1``. Several policies in one field: the most restrictive wins.
Anything malformed is ignored, never raised: pacing is advice, not a reason to fail an SR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["RateLimitInfo", "parse_ratelimit"]

#: Larger numbers than this are not a rate anyone means; ignore them.
_MAX_VALUE = 10**9


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What the gateway said about the User's quota (each field None if unknown).

    ``quota`` requests per ``window`` seconds; ``remaining`` requests in the current
    window, which resets in ``reset`` seconds; ``pool`` names the policy.
    """

    pool: str | None = None
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


def parse_ratelimit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """The RateLimit fields of a response, or None when there are none worth reading."""
    try:
        return _parse(headers)
    except Exception:  # tolerance is the contract: a bad header is ignored, never raised
        return None


def _parse(headers: Mapping[str, str]) -> RateLimitInfo | None:
    policies: dict[str | None, tuple[int, float | None]] = {}
    limits: dict[str | None, tuple[int, float | None]] = {}

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
        return None

    # The most restrictive policy: the lowest rate (a policy without a window ranks last).
    pool: str | None = None
    quota: int | None = None
    window: float | None = None
    if policies:
        pool, (quota, window) = min(
            policies.items(),
            key=lambda kv: kv[1][0] / kv[1][1] if kv[1][1] else math.inf,
        )
    remaining: int | None = None
    reset: float | None = None
    if limits:
        name, (remaining, reset) = min(
            limits.items(), key=lambda kv: (kv[1][0], -(kv[1][1] or 0.0))
        )
        if pool is None:
            pool = name
    return RateLimitInfo(pool=pool, quota=quota, window=window, remaining=remaining, reset=reset)


def _triple(
    limit: str | None,
    remaining: str | None,
    reset: str | None,
    policies: dict[str | None, tuple[int, float | None]],
    limits: dict[str | None, tuple[int, float | None]],
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
