"""The client's branch of the exception tree.

    SrtmError
    └── ClientError                   anything srtm.client raises on its own account
        ├── ClientClosedError         submit() on a client that is closing or closed
        ├── OutcomeUnknownError       the SR was sent but no answer came back (a timeout
        │                             after sending, a dropped connection): the gateway
        │                             may have processed it, so it is not retried unless
        │                             the SR is marked ``safe_to_repeat``
        └── GaveUpError               the client stopped retrying an SR that the gateway
            │                         provably did not process (refused it, or was never
            │                         reached); ``reason`` says why
            ├── DeadlineExceededError       the SR's deadline passed, or would pass during
            │                               the coming wait
            ├── RetryBudgetExhaustedError   too many retries lately: an outage is not
            │                               allowed to multiply traffic
            ├── RetryAfterTooLongError      the gateway asked for a wait above the cap
            └── AttemptsExhaustedError      ``max_attempts`` sends were all refused

A refused SR that the client gave up on was, by the gateway's own contract, not
processed: it is safe for the caller to submit it again later. An ``OutcomeUnknownError``
is the opposite: the caller must find out (from the DSP's responses) whether it ran.

The HTTP library's own errors for requests that could never be made (an invalid URL, an
unsupported scheme) are programming errors and reach the caller unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from srtm._errors import SrtmError

if TYPE_CHECKING:
    import httpx

    from srtm.client._request import ServiceRequest

__all__ = [
    "AttemptsExhaustedError",
    "ClientClosedError",
    "ClientError",
    "DeadlineExceededError",
    "GaveUpError",
    "OutcomeUnknownError",
    "RetryAfterTooLongError",
    "RetryBudgetExhaustedError",
]


class ClientError(SrtmError):
    """Root of the errors the Service Request client raises."""


class ClientClosedError(ClientError, RuntimeError):
    """The client is closing or closed and accepts no new SRs."""

    def __init__(self) -> None:
        super().__init__("the client is closed: it accepts no new service requests")


class OutcomeUnknownError(ClientError):
    """The SR was sent and no answer came: the gateway may have processed it.

    ``__cause__`` is the transport error (a read timeout, a dropped connection).
    """

    def __init__(self, sr: ServiceRequest, attempts: int, reason: str) -> None:
        self.sr = sr
        self.attempts = attempts
        self.reason = reason
        super().__init__(
            f"SR {sr.request_id} (variant {sr.variant}): sent but no answer ({reason}); "
            "it may have been processed, so it was not repeated"
        )


class GaveUpError(ClientError):
    """The client stopped retrying an SR the gateway provably did not process.

    ``response`` is the last refusal (429, or 503 from the traffic manager), or None when
    the gateway was never reached; ``__cause__`` then holds the connection error.
    """

    reason = "gave up"

    def __init__(
        self,
        sr: ServiceRequest,
        attempts: int,
        response: httpx.Response | None,
        detail: str = "",
    ) -> None:
        self.sr = sr
        self.attempts = attempts
        self.response = response
        self.detail = detail
        last = f"last answer {response.status_code}" if response is not None else "not reached"
        extra = f"; {detail}" if detail else ""
        super().__init__(
            f"SR {sr.request_id} (variant {sr.variant}): {self.reason} after "
            f"{attempts} attempt(s), {last}{extra}; it was not processed"
        )


class DeadlineExceededError(GaveUpError):
    """The SR's deadline passed in the queue, or would pass during the coming wait."""

    reason = "deadline exceeded"


class RetryBudgetExhaustedError(GaveUpError):
    """The retry budget is spent: retrying now would multiply traffic during an outage."""

    reason = "retry budget exhausted"


class AttemptsExhaustedError(GaveUpError):
    """Every one of ``max_attempts`` sends was refused or failed to connect."""

    reason = "attempts exhausted"


class RetryAfterTooLongError(GaveUpError):
    """The gateway asked for a wait longer than the client's cap.

    The client does not retry this SR early; it pauses the User for the cap and hands the
    SR back. ``retry_after`` is what the gateway asked for (seconds), ``cap`` the limit.
    """

    reason = "Retry-After above the cap"

    def __init__(
        self,
        sr: ServiceRequest,
        attempts: int,
        response: httpx.Response | None,
        *,
        retry_after: float,
        cap: float,
    ) -> None:
        self.retry_after = retry_after
        self.cap = cap
        super().__init__(
            sr,
            attempts,
            response,
            f"the gateway asked for {retry_after:.0f}s, the cap is {cap:.0f}s",
        )
