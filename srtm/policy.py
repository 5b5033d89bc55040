"""TrafficPolicy: what one pool of back-end capacity promises its Users.

All rates are Service Requests per second. The policy is a frozen value that checks
itself when built, so a gateway never starts with a configuration that cannot work:
every :class:`~srtm.PolicyError` names the field and says what is wrong.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from srtm._errors import PolicyError
from srtm.lease import LeasePolicy

__all__ = ["SUPPORTED_SCHEMES", "TrafficPolicy", "parse_duis_version"]

log = logging.getLogger("srtm.policy")

#: limits storage schemes srtm can keep its counters in (sync name; ``async+`` is implied).
SUPPORTED_SCHEMES = frozenset(
    {"memory", "redis", "rediss", "redis+unix", "redis+cluster", "redis+sentinel"}
)


def parse_duis_version(text: str) -> tuple[int, ...] | None:
    """``"4.1"`` -> ``(4, 1)``; anything that is not dotted ASCII digits -> None.

    ``str.isdigit`` alone accepts characters ``int`` refuses (``"\xb9"``, superscript
    one, a legal obs-text byte in a header), so the check is ASCII digits only.
    """
    parts = text.strip().split(".")
    if not parts or len(parts) > 4 or not all(_ascii_digits(p) and len(p) <= 4 for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _rate(name: str, value: object, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(name, f"must be a number of SR/s, got {value!r}")
    rate = float(value)
    if not math.isfinite(rate):
        raise PolicyError(name, f"must be finite, got {value!r}")
    if positive and rate <= 0:
        raise PolicyError(name, f"must be greater than 0, got {value!r}")
    if rate < 0:
        raise PolicyError(name, f"must not be negative, got {value!r}")
    return rate


def _rates(name: str, value: object) -> Mapping[str, float]:
    if not isinstance(value, Mapping):
        raise PolicyError(name, f"must be a mapping of User ID to SR/s, got {type(value).__name__}")
    out: dict[str, float] = {}
    for user, rate in value.items():
        if not isinstance(user, str) or not user.strip():
            raise PolicyError(name, f"User IDs must be non-empty strings, got {user!r}")
        out[user] = _rate(f"{name}[{user!r}]", rate)
    return MappingProxyType(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficPolicy:
    """Capacity, operating threshold and allocations of one pool.

    ``capacity`` is what the protected back end can process (SR/s). Traffic management
    engages when the offered rate reaches ``threshold * capacity`` (the budget) and
    releases once it has stayed below ``release_ratio`` of the budget for
    ``release_after`` control periods. While engaged each User gets its allocation
    (lifted to ``floor``) plus a weighted fair share of what others leave unused.
    Whatever happens, no more than ``capacity * window`` requests are admitted in a window.
    ``lease`` lets each node take a User's admissions from a shared store in blocks
    (:mod:`srtm.lease`): fewer round trips, a bounded under-admission; off by default.
    """

    capacity: float
    threshold: float = 0.8
    allocations: Mapping[str, float] = field(default_factory=dict)
    default_allocation: float = 0.0
    floor: float = 0.0
    weights: Mapping[str, float] | None = None
    window: float = 1.0
    control_period: float | None = None
    storage: str = "memory://"
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    engage_after: int = 1
    release_after: int = 8
    release_ratio: float = 0.9
    smoothing: float = 0.75  # share of the gap a falling demand estimate closes per second
    duis_429_from: str = "4.1"
    shadow: bool = False
    nodes: int = 1
    lease: LeasePolicy | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "capacity", _rate("capacity", self.capacity, positive=True))
        threshold = _rate("threshold", self.threshold, positive=True)
        if threshold > 1:
            raise PolicyError("threshold", f"must be in (0, 1], got {self.threshold!r}")
        s(self, "threshold", threshold)
        s(self, "allocations", _rates("allocations", self.allocations))
        s(self, "default_allocation", _rate("default_allocation", self.default_allocation))
        s(self, "floor", _rate("floor", self.floor))
        if self.weights is not None:
            s(self, "weights", _rates("weights", self.weights))
        window = _rate("window", self.window, positive=True)
        if window > 3600:
            raise PolicyError("window", f"must be at most 3600 s, got {self.window!r}")
        s(self, "window", window)
        if self.control_period is None:
            # A quarter window (at most 1 s): a flood shows within a fraction of a second,
            # at the price of one store round trip per period per node.
            s(self, "control_period", min(max(window / 4, 0.05), 1.0))
        else:
            period = _rate("control_period", self.control_period, positive=True)
            if period > 60:
                raise PolicyError("control_period", f"must be at most 60 s, got {period!r}")
            s(self, "control_period", period)
        for name in ("engage_after", "release_after", "nodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PolicyError(name, f"must be an integer >= 1, got {value!r}")
        ratio = _rate("release_ratio", self.release_ratio, positive=True)
        if ratio >= 1:
            raise PolicyError("release_ratio", f"must be in (0, 1), got {self.release_ratio!r}")
        s(self, "release_ratio", ratio)
        smoothing = _rate("smoothing", self.smoothing, positive=True)
        if smoothing > 1:
            raise PolicyError("smoothing", f"must be in (0, 1], got {self.smoothing!r}")
        s(self, "smoothing", smoothing)
        if (
            not isinstance(self.duis_429_from, str)
            or parse_duis_version(self.duis_429_from) is None
        ):
            raise PolicyError(
                "duis_429_from", f"must be a DUIS version such as '4.1', got {self.duis_429_from!r}"
            )
        self._check_storage()
        if self.lease is not None and not isinstance(self.lease, LeasePolicy):
            raise PolicyError("lease", f"must be a LeasePolicy or None, got {self.lease!r}")
        s(self, "storage_options", MappingProxyType(dict(self.storage_options)))
        if self.oversubscribed:
            log.warning(
                "over-subscribed: allocations add up to %.1f SR/s, more than the budget "
                "threshold*capacity = %.1f SR/s; while traffic management is active not every "
                "User can have its allocation (the hard cap of %.1f SR/s still holds)",
                self.allocated,
                self.budget,
                self.capacity,
            )

    def _check_storage(self) -> None:
        if not isinstance(self.storage, str) or "://" not in self.storage:
            raise PolicyError(
                "storage", f"must be a limits storage URI such as 'memory://', got {self.storage!r}"
            )
        scheme = urlsplit(self.storage).scheme.removeprefix("async+")
        if scheme not in SUPPORTED_SCHEMES:
            raise PolicyError(
                "storage",
                f"scheme {scheme!r} is not supported: use one of "
                + ", ".join(f"'{s}://'" for s in sorted(SUPPORTED_SCHEMES)),
            )
        if scheme != "memory":
            from srtm._extras import MissingExtraError, require

            try:
                require(f"storage {scheme!r}", "redis", "redis")
            except MissingExtraError as exc:
                raise PolicyError("storage", str(exc)) from exc

    @property
    def scheme(self) -> str:
        """The storage scheme without any ``async+`` prefix."""
        return urlsplit(self.storage).scheme.removeprefix("async+")

    @property
    def sync_storage_uri(self) -> str:
        """The storage URI for the WSGI (threaded) path."""
        return self.storage.removeprefix("async+")

    @property
    def async_storage_uri(self) -> str:
        """The same storage for the ASGI path: its ``limits.aio`` twin."""
        uri = self.sync_storage_uri
        return uri if uri.startswith("async+") else "async+" + uri

    @property
    def budget(self) -> float:
        """``threshold * capacity``: the rate traffic management shares out (SR/s)."""
        return self.threshold * self.capacity

    @property
    def allocated(self) -> float:
        """Sum of the listed Users' guarantees, floor applied (SR/s)."""
        return sum(max(a, self.floor) for a in self.allocations.values())

    @property
    def oversubscribed(self) -> bool:
        """True when the listed allocations add up to more than the budget."""
        return self.allocated > self.budget + 1e-9

    @property
    def duis_429_version(self) -> tuple[int, ...]:
        """The DUIS version from which a throttled User gets 429 rather than 503."""
        version = parse_duis_version(self.duis_429_from)
        assert version is not None  # checked in __post_init__
        return version

    def guarantee(self, user: str) -> float:
        """``max(allocation, floor)`` of ``user`` (SR/s); unlisted Users get the default."""
        return max(self.allocations.get(user, self.default_allocation), self.floor)

    def weight(self, user: str) -> float:
        """Share of spare capacity ``user`` claims: the given weight, else its guarantee."""
        if self.weights is not None and user in self.weights:
            return self.weights[user]
        return self.guarantee(user)
