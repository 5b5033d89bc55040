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
from typing import Any, Literal
from urllib.parse import urlsplit

from srtm._errors import PolicyError
from srtm.identity import valid_user_id
from srtm.lease import LeasePolicy

__all__ = ["MIN_CONTROL_PERIOD", "SUPPORTED_SCHEMES", "TrafficPolicy", "parse_duis_version"]

log: logging.Logger = logging.getLogger("srtm.policy")

#: limits storage schemes srtm can keep its counters in (sync name; ``async+`` is implied).
SUPPORTED_SCHEMES = frozenset(
    {"memory", "redis", "rediss", "redis+unix", "redis+cluster", "redis+sentinel"}
)

#: How Users not named in ``allocations`` are treated (see ``TrafficPolicy.unknown_users``).
UnknownUsers = Literal["collective", "refuse", "per_identity"]
_UNKNOWN_USERS = ("collective", "refuse", "per_identity")

#: The shortest control period accepted (seconds). Each period costs every node one store
#: round trip per pool and a recomputation: at 50 ms that is 20 scripts a second per node
#: (1,000 for 50 nodes, about 1% of one Redis core), and a window's offered count read
#: more often than that is a handful of requests, noise rather than a rate. The default
#: (a quarter window) already never goes below it.
MIN_CONTROL_PERIOD = 0.05


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
        if not valid_user_id(user):
            # The header identity refuses such an ID with 401, so the entry could never apply.
            raise PolicyError(
                name,
                f"{user!r} is not a User ID any request can carry (1-128 characters: "
                "letters, digits, '.', '_', ':', '-', starting with a letter or digit)",
            )
        out[user] = _rate(f"{name}[{user!r}]", rate)
    return MappingProxyType(out)


def _below_one_request(rate: float, window: float) -> bool:
    """True for a positive rate that comes to less than one request per window."""
    return 0 < rate * window < 1 - 1e-9


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

    ``unknown_users`` says what a User not named in ``allocations`` gets:

    - ``"collective"`` (the default): all such Users share ONE allocation,
      ``max(default_allocation, floor)``, like Kubernetes APF's catch-all level. The
      collective competes with the named Users as one entity and its share is split
      max-min among its members, so an attacker who sends every request under a new
      identity never multiplies guarantees.
    - ``"refuse"``: such Users are refused with 403 by the middleware
      (:meth:`named` says who is named); ``default_allocation`` must then be 0.
    - ``"per_identity"``: each such User gets ``max(default_allocation, floor)`` of its
      own. Risky: whoever can present new IDs (any client, unless a trusted front end
      sets the header) holds a new guarantee with each one, and enough of them take
      the capacity from the named Users. Only for a closed set of trusted identities.
    """

    capacity: float
    threshold: float = 0.8
    allocations: Mapping[str, float] = field(default_factory=dict)
    default_allocation: float = 0.0
    unknown_users: UnknownUsers = "collective"
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
        if self.unknown_users not in _UNKNOWN_USERS:
            raise PolicyError(
                "unknown_users",
                f"must be one of {', '.join(map(repr, _UNKNOWN_USERS))}, "
                f"got {self.unknown_users!r}",
            )
        if self.unknown_users == "refuse" and self.default_allocation > 0:
            raise PolicyError(
                "default_allocation",
                "must be 0 when unknown_users='refuse': Users not named are refused, "
                f"so nobody could use it (got {self.default_allocation!r})",
            )
        s(self, "floor", _rate("floor", self.floor))
        if self.weights is not None:
            s(self, "weights", _rates("weights", self.weights))
        window = _rate("window", self.window, positive=True)
        if window > 3600:
            raise PolicyError("window", f"must be at most 3600 s, got {self.window!r}")
        s(self, "window", window)
        self._check_counts()
        if self.control_period is None:
            # A quarter window (at most 1 s): a flood shows within a fraction of a second,
            # at the price of one store round trip per period per node.
            s(self, "control_period", min(max(window / 4, 0.05), 1.0))
        else:
            period = _rate("control_period", self.control_period, positive=True)
            if period < MIN_CONTROL_PERIOD:
                raise PolicyError(
                    "control_period",
                    f"must be at least {MIN_CONTROL_PERIOD} s (each period costs every node a "
                    f"store round trip and a recomputation), got {period!r}",
                )
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
                "over-subscribed: allocations (the unnamed Users' collective included) add up to "
                "%.1f SR/s, more than the budget "
                "threshold*capacity = %.1f SR/s; while traffic management is active not every "
                "User can have its allocation (the hard cap of %.1f SR/s still holds)",
                self.allocated,
                self.budget,
                self.capacity,
            )

    def _check_counts(self) -> None:
        """Every figure the gate counts per window must come to at least one request."""
        window = self.window
        if self.capacity * window < 1 - 1e-9:
            raise PolicyError(
                "capacity",
                f"capacity {self.capacity:g} SR/s x window {window:g} s is less than one "
                "request per window: every request would be refused (raise capacity or "
                "lengthen the window)",
            )
        if self.threshold * self.capacity * window < 1 - 1e-9:
            raise PolicyError(
                "threshold",
                f"threshold x capacity x window = {self.threshold * self.capacity * window:.3g}"
                " requests, less than one per window: nothing could be shared out",
            )
        # A named User's guarantee is counted in whole requests, at least one: a smaller
        # allocation works, as one request per window, but not as written.
        small = {
            user: rate
            for user, rate in self.allocations.items()
            if _below_one_request(max(rate, self.floor), window)
        }
        if small:
            log.warning(
                "allocations below one request per window (window %g s) are lifted to one "
                "request per window: %s",
                window,
                ", ".join(f"{user!r}: {rate:g} SR/s" for user, rate in sorted(small.items())[:5])
                + (f" and {len(small) - 5} more" if len(small) > 5 else ""),
            )
        # The collective's members share its guarantee in whole requests, rounded down,
        # so less than one request per window would guarantee them nothing at all.
        collective = self.collective_guarantee
        if _below_one_request(collective, window):
            name = "default_allocation" if self.default_allocation >= self.floor else "floor"
            raise PolicyError(
                name,
                f"the unnamed Users' collective allocation of {collective:g} SR/s x window "
                f"{window:g} s is less than one request per window, so it could never be "
                "kept: use 0 for none, at least 1/window, or a longer window",
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
        """Sum of the named Users' guarantees and the collective's, floor applied (SR/s).

        With ``unknown_users="per_identity"`` every unnamed User adds its own default on
        top, without bound: that is not counted here (it cannot be).
        """
        named = sum(max(a, self.floor) for a in self.allocations.values())
        return named + self.collective_guarantee

    @property
    def collective_guarantee(self) -> float:
        """What the unnamed Users hold together while TM is on (SR/s).

        ``max(default_allocation, floor)`` for the default collective: the collective is
        one allocation, lifted by the floor like any other. 0 when unnamed Users are
        refused, and 0 with ``per_identity`` (each then has its own, see :meth:`guarantee`).
        """
        if self.unknown_users != "collective":
            return 0.0
        return max(self.default_allocation, self.floor)

    def named(self, user: str) -> bool:
        """True when ``user`` is named in ``allocations`` (it has an allocation of its own)."""
        return user in self.allocations

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
        """The guarantee ``user`` holds on its own (SR/s): ``max(allocation, floor)``.

        A User not named in ``allocations`` holds ``max(default_allocation, floor)`` of its
        own only with ``unknown_users="per_identity"``; otherwise 0 here, since it shares
        :attr:`collective_guarantee` with the other unnamed Users (its part of that, which
        depends on their demand, is :meth:`srtm.governor.Governor.guarantee`).
        """
        allocation = self.allocations.get(user)
        if allocation is not None:
            return max(allocation, self.floor)
        if self.unknown_users == "per_identity":
            return max(self.default_allocation, self.floor)
        return 0.0

    def weight(self, user: str) -> float:
        """Share of spare capacity ``user`` claims: the given weight, else its guarantee."""
        if self.weights is not None and user in self.weights:
            return self.weights[user]
        return self.guarantee(user)
