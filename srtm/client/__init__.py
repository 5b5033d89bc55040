"""The Service User's client: send SRs to the gateway, urgent first, throttling honoured.

A Supplier's back end queues Service Requests here. The client sends them in priority
order (prepayment top-ups first, bulk reads last, with aging so nothing starves), paces
itself from the gateway's RateLimit fields, pauses the whole User when the gateway refuses
(429, or 503 with ``Retry-After``: what the real DCC gateway sends; see ``RefusalRule``),
retries only what the gateway provably did not process, and resolves every SR's handle:
with the final response, an error, or a cancellation, at exit too.

    from srtm.client import ServiceRequest, ServiceRequestClient

    with ServiceRequestClient(base_url="https://gateway.example", user_id="90-B3-D5-1F-30-01-00-00",
                              duis_version="4.1", cert=("user.pem", "user.key")) as client:
        response = client.send(ServiceRequest(variant="2.2", body=signed_xml, path="/sr"))
"""

from srtm.client._client import AsyncServiceRequestClient, ServiceRequestClient
from srtm.client._clock import Clock, SystemClock, VirtualClock
from srtm.client._errors import (
    AttemptsExhaustedError,
    ClientClosedError,
    ClientError,
    DeadlineExceededError,
    GaveUpError,
    OutcomeUnknownError,
    RetryAfterTooLongError,
    RetryBudgetExhaustedError,
)
from srtm.client._events import (
    ClientEvent,
    ClientStats,
    RetryScheduled,
    SRSettled,
    UserPaused,
    WaitStats,
)
from srtm.client._priorities import DEFAULT_CLASSES, Priority, PriorityPolicy, default_priority
from srtm.client._ratelimit import RateLimitInfo, RateLimitPolicy, parse_ratelimit
from srtm.client._refusal import RefusalRule
from srtm.client._request import ServiceRequest
from srtm.client._retry import RetryAfterWait, RetryPolicy, WaitDecision, parse_retry_after

__all__ = [
    "DEFAULT_CLASSES",
    "AsyncServiceRequestClient",
    "AttemptsExhaustedError",
    "ClientClosedError",
    "ClientError",
    "ClientEvent",
    "ClientStats",
    "Clock",
    "DeadlineExceededError",
    "GaveUpError",
    "OutcomeUnknownError",
    "Priority",
    "PriorityPolicy",
    "RateLimitInfo",
    "RateLimitPolicy",
    "RefusalRule",
    "RetryAfterTooLongError",
    "RetryAfterWait",
    "RetryBudgetExhaustedError",
    "RetryPolicy",
    "RetryScheduled",
    "SRSettled",
    "ServiceRequest",
    "ServiceRequestClient",
    "SystemClock",
    "UserPaused",
    "VirtualClock",
    "WaitDecision",
    "WaitStats",
    "default_priority",
    "parse_ratelimit",
    "parse_retry_after",
]
