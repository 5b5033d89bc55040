"""``ServiceRequest``: one SR as the client queues and sends it."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ServiceRequest"]


def _new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRequest:
    """A Service Request to POST to the gateway.

    ``variant`` is the Service Reference Variant (``"2.2"`` for Top Up Device); it picks
    the SR's priority class unless ``priority`` overrides it (lower is more urgent).
    ``body`` is sent as is (signed DUIS XML), every attempt byte for byte the same, with
    the same ``request_id`` in the ``X-Request-ID`` header: a retried SR is the same SR.

    ``safe_to_repeat`` allows the client to resend after an ambiguous failure (a timeout
    after sending, a 500): say so only for SRs whose repetition does no harm, such as
    reads. ``deadline`` is how many seconds after submission the SR is still worth
    sending; the client gives up rather than start a wait that would end past it.
    """

    variant: str
    body: bytes
    path: str = "/"
    safe_to_repeat: bool = False
    deadline: float | None = None
    priority: int | None = None
    request_id: str = field(default_factory=_new_request_id)
    content_type: str = "application/xml"
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.variant, str) or not self.variant.strip():
            raise ValueError(f"variant: must be a non-empty string, got {self.variant!r}")
        if not isinstance(self.body, bytes | bytearray | memoryview):
            raise TypeError(f"body: must be bytes, got {type(self.body).__name__}")
        if not isinstance(self.body, bytes):
            object.__setattr__(self, "body", bytes(self.body))
        if not self.path.startswith("/"):
            raise ValueError(f"path: must start with '/', got {self.path!r}")
        if self.deadline is not None and not (math.isfinite(self.deadline) and self.deadline > 0):
            raise ValueError(
                f"deadline: must be a positive number of seconds, got {self.deadline!r}"
            )
        if self.priority is not None and (
            isinstance(self.priority, bool) or not isinstance(self.priority, int)
        ):
            raise TypeError(f"priority: must be an int or None, got {self.priority!r}")
        if not self.request_id:
            raise ValueError("request_id: must be a non-empty string")
        headers: object = self.headers
        if isinstance(headers, Mapping):
            object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in headers.items()))
        else:
            object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in self.headers))
