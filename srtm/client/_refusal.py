"""Which answers mean "not processed, this User must wait": the one place that decides.

The real DCC gateway is not srtm. Before DUIS 4.1 it answers a throttled User with a
plain HTTP 503 "Service Unavailable" and ``Retry-After``, and nothing srtm-specific; from
4.1, 429. So by default:

- 429 is a refusal, whatever the server;
- 503 with a ``Retry-After`` field is a refusal (the gateway's throttle, any version);
- 503 with a refusal marker (srtm's ``X-SRTM-Refused``) is a refusal even without one;
- any other 503, and 500, 502, 504, may have been processed: ambiguous;
- everything else is the caller's final answer.

A refusal pauses the whole User (at least the ``Retry-After``) and requeues the SR in its
place; an ambiguous answer goes back to the caller unless the SR is safe to repeat.
Change the rule with ``RetryPolicy(refusal=RefusalRule(...))``, or subclass
``RefusalRule`` and override ``verdict`` for a gateway that signals otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import httpx

__all__ = ["RefusalRule", "Verdict"]

Verdict = Literal["refused", "ambiguous", "final"]


def _statuses(name: str, value: object) -> frozenset[int]:
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        raise TypeError(f"{name}: must be a collection of HTTP status codes")
    items: set[int] = set()
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"{name}: {status!r} is not an HTTP status code (100-599)")
        items.add(status)
    return frozenset(items)


@dataclass(frozen=True, slots=True, kw_only=True)
class RefusalRule:
    """What a response means: refused (not processed, pause the User), ambiguous, or final.

    ``always``: statuses that are refusals whatever they carry. ``with_retry_after``:
    statuses that are refusals when they carry a ``Retry-After`` field (any value: an
    unusable one means backoff, not "processed"). ``markers``: header fields whose presence
    makes a ``with_retry_after`` status a refusal without ``Retry-After``. ``ambiguous``:
    statuses that may have been processed (resent only when the SR is safe to repeat).
    """

    always: frozenset[int] = frozenset({429})
    with_retry_after: frozenset[int] = frozenset({503})
    markers: frozenset[str] = frozenset({"x-srtm-refused"})
    ambiguous: frozenset[int] = frozenset({500, 502, 503, 504})

    def __post_init__(self) -> None:
        for name in ("always", "with_retry_after", "ambiguous"):
            object.__setattr__(self, name, _statuses(name, getattr(self, name)))
        markers = self.markers
        if isinstance(markers, str) or not all(isinstance(m, str) and m for m in markers):
            raise TypeError("markers: must be a collection of header field names")
        object.__setattr__(self, "markers", frozenset(m.lower() for m in markers))

    def verdict(self, response: httpx.Response) -> Verdict:
        """Whether ``response`` was a refusal, ambiguous, or the caller's final answer."""
        status = response.status_code
        if status in self.always:
            return "refused"
        if status in self.with_retry_after:
            headers = response.headers
            if "retry-after" in headers or any(m in headers for m in self.markers):
                return "refused"
        if status in self.ambiguous:
            return "ambiguous"
        return "final"
