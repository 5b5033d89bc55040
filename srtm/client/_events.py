"""What the client reports: events for hooks, and a statistics snapshot.

Pass ``on_event=`` to a client to receive every event (from the client's own thread or
task: keep the hook quick; an exception in it is logged and ignored). The same facts go
to the ``srtm.client`` logger: pauses at INFO, capped Retry-After at WARNING, retries and
settlements at DEBUG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from srtm.client._request import ServiceRequest
    from srtm.client._retry import WaitDecision

__all__ = [
    "ClientEvent",
    "ClientStats",
    "RetryScheduled",
    "SRSettled",
    "UserPaused",
    "WaitStats",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SRSettled:
    """An SR reached its end: a response, an error, or a cancellation.

    ``queued_for`` is the time from submission to the first send (None if never sent);
    ``latency`` the time from submission to this end.
    """

    sr: ServiceRequest
    priority: int
    outcome: Literal["response", "error", "cancelled"]
    status_code: int | None
    error: BaseException | None
    attempts: int
    queued_for: float | None
    latency: float


@dataclass(frozen=True, slots=True, kw_only=True)
class UserPaused:
    """The gateway refused an SR (or could not be reached) and the whole User waits.

    ``pause`` is how long dispatch now holds, in seconds; ``decision`` how it was
    reached (Retry-After or backoff, jitter, whether a huge value was capped).
    """

    sr: ServiceRequest
    status_code: int | None
    pause: float
    decision: WaitDecision | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled:
    """An SR will be sent again after ``delay`` seconds (``attempt`` is the one that failed)."""

    sr: ServiceRequest
    attempt: int
    delay: float
    cause: str


#: Any event a client reports to its ``on_event`` callback.
ClientEvent = SRSettled | UserPaused | RetryScheduled


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitStats:
    """Time from submission to first send, for the SRs of one class sent so far."""

    count: int = 0
    total: float = 0.0
    max: float = 0.0

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientStats:
    """A snapshot of the client's state and counters.

    ``queued`` counts waiting SRs per class (ready or awaiting a retry);
    ``awaiting_retry`` those held for a retry; ``throttle_pauses`` how many times the
    User's dispatch was paused (refused by the gateway, or the gateway unreachable);
    ``outcome_unknown`` how many SRs ended sent but unanswered (``OutcomeUnknownError``,
    counted in ``errors`` too);
    ``paused_for`` the seconds the pause still has to run; ``pace`` the current pacing
    rate (SR/s, None: unpaced); ``waited`` the queueing time per class.
    """

    queued: Mapping[int, int]
    awaiting_retry: int
    in_flight: int
    submitted: int
    attempts: int
    responses: int
    errors: int
    cancelled: int
    retries: int
    throttle_pauses: int
    outcome_unknown: int
    paused_for: float
    pace: float | None
    waited: Mapping[int, WaitStats]

    @property
    def pending(self) -> int:
        """SRs not yet settled: queued or in flight."""
        return sum(self.queued.values()) + self.in_flight
