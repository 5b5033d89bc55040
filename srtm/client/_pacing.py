"""Pacing: space sends so that the gateway rarely has to refuse any.

The rate is the lower of a configured allocation and what the gateway's short-window
``RateLimit-Policy`` quotas say (quota / window, the lowest), times ``factor`` (a safety
margin: network jitter bunches evenly spaced sends). Sends are spaced by the generic cell
rate algorithm (one theoretical arrival time per lane), and bulk SRs have their own, slower lane at
``bulk_share`` of the rate, so urgent SRs always find room. When the gateway's
``RateLimit`` field says nothing remains of a policy's quota, dispatch holds until that
policy's window resets: so a long-window quota (a daily budget) costs nothing until it
is spent, and then holds the User until it renews.

Pure: no I/O and no clock of its own; the caller passes ``now``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from srtm.client._ratelimit import RateLimitInfo

__all__ = ["Pacer"]


class Pacer:
    """When may the next SR (bulk or not) go?"""

    __slots__ = (
        "_bulk_tat",
        "_gateway",
        "_tat",
        "_windows",
        "bulk_share",
        "configured",
        "factor",
        "follow_gateway",
        "rate",
    )

    def __init__(
        self,
        *,
        rate: float | None,
        follow_gateway: bool,
        factor: float,
        bulk_share: float,
    ) -> None:
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate: must be a positive number of SR/s or None, got {rate!r}")
        if not (0.0 < factor <= 1.0):
            raise ValueError(f"pace_factor: must be in (0, 1], got {factor!r}")
        self.configured = rate
        self.follow_gateway = follow_gateway
        self.factor = factor
        self.bulk_share = bulk_share
        self.gateway = None  # sets ``rate`` too
        self._tat = -math.inf
        self._bulk_tat = -math.inf
        # Per policy: SRs left in its window, and when the window ends (monotonic).
        self._windows: dict[str | None, list[float]] = {}

    @property
    def gateway(self) -> float | None:
        """The pace the gateway's RateLimit fields ask for, in SR/s (None: none seen)."""
        return self._gateway

    @gateway.setter
    def gateway(self, value: float | None) -> None:
        self._gateway = value
        rates = [r for r in (self.configured, value) if r is not None]
        # Kept, not computed per SR: ready_at and on_send read it for every send.
        #: The pace in SR/s, or None when unpaced.
        self.rate: float | None = min(rates) * self.factor if rates else None

    def observe(self, info: RateLimitInfo | None, now: float) -> None:
        """Take in the RateLimit fields of a response."""
        if info is None or not self.follow_gateway:
            return
        pace = info.pace
        if pace is not None:
            self.gateway = pace
        windows = {
            p.name: [float(p.remaining), now + (p.reset if p.reset is not None else 1.0)]
            for p in info.policies
            if p.remaining is not None
        }
        if windows:
            self._windows = windows

    def ready_at(self, now: float, *, bulk: bool) -> float:
        """The earliest time an SR of this kind may go (``<= now``: go now)."""
        at = -math.inf
        if self._windows:
            for name, (left, end) in list(self._windows.items()):
                if now >= end:
                    del self._windows[name]
                elif left <= 0:
                    at = max(at, end)
        if self.rate is not None:
            at = max(at, self._tat)
            if bulk and self.bulk_share < 1.0:
                at = max(at, self._bulk_tat)
        return at

    def on_send(self, now: float, *, bulk: bool) -> None:
        """Account for one send at ``now``."""
        for window in self._windows.values():
            window[0] -= 1
        rate = self.rate
        if rate is None:
            return
        self._tat = max(self._tat, now) + 1.0 / rate
        if bulk and self.bulk_share < 1.0:
            self._bulk_tat = max(self._bulk_tat, now) + 1.0 / (rate * self.bulk_share)
