"""Leases: a node takes a User's admissions from the shared store in small blocks.

Without leases every admitted request costs one store round trip (one script call on
Redis). With a :class:`LeasePolicy` on a pool, a node that needs a round trip for a
User asks for a block of up to ``size`` admissions instead of one; the store grants
them with the very rule a single request meets (:func:`srtm.ledger.admit_count`,
atomically, against the same per-User and pool counters), and the node then admits
that User's next requests locally until the block is spent. Google's Doorman hands
out capacity the same way.

What it costs in accuracy, and why nothing is ever over-admitted:

* A block is counted as admitted in the store the moment it is granted, so the
  per-User limit and the pool's hard cap hold across all nodes exactly as before: the
  admitted total never exceeds what the store granted.
* A block belongs to one fixed window. What is left of it when the window ends is
  never used: the store counted admissions that did not happen. That is the price,
  **under-admission**, at most ``want - 1`` per node and User per window, where
  ``want`` (the block size, see :meth:`LeasePolicy.want`) is at most ``size`` and at
  most what this node's recent rate of that User would use in ``horizon`` seconds or
  in the rest of the window, whichever is shorter. A User who sends a few requests a
  second gets blocks of one: exact, and no cheaper than without leases.
* While a block is unspent on one node, another node asking for the same User sees it
  as used: near a User's limit, that User may be refused on one node while another
  still holds part of its quota (the same bound, counted per node).
* When the governor recomputes (a new fair share, a capacity change) a block is cut to
  what the new quota still allows on the counts the store reported when it was
  granted, so a lowered limit applies to leased requests at once.
* Offered requests served from a block are counted locally and reach the store with
  the node's next grant for that User (the script adds them) or the next
  recomputation, whichever comes first: the demand every node's governor sees lags by
  at most one block, and never more than one control period.

Leases are off by default (``TrafficPolicy(lease=None)``): one round trip per admitted
request keeps every count in the store exact, and the RateLimit ``remaining`` figure
with it. Turn them on when the store's round trips, not the back end, bound a node's
throughput; on ``memory://`` a lease would save nothing and is ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from srtm._errors import PolicyError
from srtm.ledger import grant_count, room

if TYPE_CHECKING:
    from srtm.ledger import Quota

__all__ = ["Lease", "LeasePolicy", "grant_count"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LeasePolicy:
    """How large a block of admissions a node takes from the store for one User.

    ``size`` is the most admissions one store call grants; ``horizon`` (seconds) caps a
    block at what this node's recent rate of the User would use in that time, so a
    block is spent within about ``horizon`` and little is left when the window ends.
    """

    size: int = 32
    horizon: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise PolicyError("lease.size", f"must be an integer >= 1, got {self.size!r}")
        horizon = self.horizon
        if isinstance(horizon, bool) or not isinstance(horizon, int | float):
            raise PolicyError("lease.horizon", f"must be a number of seconds, got {horizon!r}")
        if not (math.isfinite(horizon) and 0 < horizon <= 60):
            raise PolicyError("lease.horizon", f"must be in (0, 60] seconds, got {horizon!r}")
        object.__setattr__(self, "horizon", float(horizon))

    def want(self, n: int, rate: float, seconds_left: float) -> int:
        """Admissions to ask for when ``n`` are needed now.

        ``rate`` is this node's recent rate of the User (SR/s, 0 if unknown) and
        ``seconds_left`` what remains of the window. Never fewer than ``n``.
        """
        if rate <= 0.0:
            return n
        expected = math.ceil(rate * min(self.horizon, seconds_left))
        return max(n, min(self.size, expected))


class Lease:
    """One node's block of a User's admissions, and its estimate of the User's rate.

    ``used`` and ``total`` are the store's counts right after the last grant (the block
    included); ``left`` is what this node has not spent of it yet.
    """

    __slots__ = (
        "epoch",
        "granted_at",
        "left",
        "quota",
        "rate",
        "served",
        "total",
        "used",
        "window",
    )

    def __init__(self) -> None:
        self.window: int = -1
        self.epoch: int = -1
        self.quota: Quota | None = None
        self.left: int = 0
        self.used: int = 0
        self.total: int = 0
        self.granted_at: float | None = None
        self.served: int = 0  # requests served since the last grant, the triggering ones included
        self.rate: float = 0.0  # SR/s of this User on this node, estimated at each grant

    def usable(self, window: int, epoch: int, quota: Quota) -> int:
        """What may be spent now: 0 outside the block's window; cut to a new quota."""
        if self.window != window or self.left <= 0:
            return 0
        if self.epoch != epoch:
            if quota != self.quota:
                # The governor moved: keep only what the new quota allows on the counts
                # the store reported, this block's unspent part taken out.
                spent_used, spent_total = self.used - self.left, self.total - self.left
                self.left = min(self.left, room(spent_used, spent_total, quota))
                self.quota = quota
            self.epoch = epoch
        return self.left

    def spend(self, n: int) -> tuple[int, int]:
        """Take ``n`` from the block; (User's, pool's) counts without the unspent rest."""
        self.left -= n
        self.served += n
        return self.used - self.left, self.total - self.left

    def estimate(self, now: float) -> float:
        """Update and return the rate estimate, as a grant is about to be asked for."""
        if self.granted_at is not None:
            elapsed = now - self.granted_at
            if elapsed > 0:
                sample = self.served / elapsed
                self.rate = sample if self.rate <= 0.0 else 0.5 * (self.rate + sample)
        return self.rate

    def granted(
        self,
        now: float,
        window: int,
        epoch: int,
        quota: Quota,
        n: int,
        k: int,
        used: int,
        total: int,
    ) -> None:
        """Record a grant of ``k`` (the first ``n`` of it spent at once)."""
        if self.window == window and self.left > 0:
            # Another grant for the same window landed first (concurrent requests):
            # keep both blocks; the later counts include the earlier block.
            self.left += k - n
            self.used, self.total = max(self.used, used), max(self.total, total)
        else:
            self.left = k - n
            self.used, self.total = used, total
        self.window, self.epoch, self.quota = window, epoch, quota
        self.granted_at = now
        self.served = n
