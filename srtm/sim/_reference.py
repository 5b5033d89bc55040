"""The reference figures: 50 Service Users, their day, their allocations, one policy.

From the seed documents (DCC, March 2020): capacity 1,350 SR/s; 5.4 million SRs a day,
70% of them between 00:00 and 06:00; the peak minute about 20% of capacity. The Users
are our own invention with realistic proportions: six large Suppliers carry over half the
traffic, ten medium ones a fifth, a long tail of 24 small Suppliers and ten network
operators the rest. Allocations follow each User's share of the traffic and add up to
92% of the budget (threshold x capacity), with a floor of 2 SR/s. The governor
recomputes once a second (``control_period=1.0``; the core's default is a quarter
window): see :data:`REFERENCE_CONTROL_PERIOD`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from srtm.policy import TrafficPolicy
from srtm.sim._classes import Priority
from srtm.sim._curves import daytime, night
from srtm.sim._scenario import Client, OpenLoop, Stream, User

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "REFERENCE_CAPACITY",
    "REFERENCE_CONTROL_PERIOD",
    "REFERENCE_DAILY_VOLUME",
    "REFERENCE_THRESHOLD",
    "Member",
    "reference_policy",
    "reference_population",
    "reference_users",
]

#: The reference gateway's capacity, in Service Requests per second.
REFERENCE_CAPACITY: Final = 1350.0
#: The fraction of capacity at which traffic management engages.
REFERENCE_THRESHOLD: Final = 0.8
#: Service Requests a day across the reference population (70% between 00:00 and 06:00).
REFERENCE_DAILY_VOLUME: Final = 5_400_000.0
#: The governor recomputes once a window (1 s). The core's default is a quarter window,
#: which costs four times as many recomputations: ``srtm simulate --control-period 0.25``.
REFERENCE_CONTROL_PERIOD = 1.0
#: Share of the budget the reference allocations add up to (before the floor).
ALLOCATED_SHARE = 0.92
ALLOCATION_FLOOR = 2.0

P = Priority
# Class mixes (share of a User's SRs by class), by time of day and kind of User.
_NIGHT_MIX = {P.PREPAYMENT: 0.03, P.CUSTOMER: 0.03, P.INSTALLATION: 0.02, P.ROUTINE: 0.12,
              P.BULK: 0.80}  # fmt: skip
_DAY_MIX = {P.PREPAYMENT: 0.10, P.CUSTOMER: 0.25, P.INSTALLATION: 0.20, P.ROUTINE: 0.25,
            P.BULK: 0.20}  # fmt: skip
_PREPAY_NIGHT_MIX = {P.PREPAYMENT: 0.08, P.CUSTOMER: 0.05, P.INSTALLATION: 0.03,
                     P.ROUTINE: 0.12, P.BULK: 0.72}  # fmt: skip
_PREPAY_DAY_MIX = {P.PREPAYMENT: 0.25, P.CUSTOMER: 0.25, P.INSTALLATION: 0.15,
                   P.ROUTINE: 0.15, P.BULK: 0.20}  # fmt: skip
_NETWORK_NIGHT_MIX = {P.ROUTINE: 0.10, P.BULK: 0.90}
_NETWORK_DAY_MIX = {P.ROUTINE: 0.40, P.BULK: 0.60}


@dataclass(frozen=True, slots=True)
class Member:
    """One reference User: who it is and what share of the national traffic it sends."""

    id: str
    name: str
    kind: str  # "large", "medium", "small" Supplier, or "network" operator
    share: float  # of the daily volume
    prepay_heavy: bool
    shift: float  # seconds its day runs late (or early, if negative)

    @property
    def daily_volume(self) -> float:
        """SRs a day at the reference volume."""
        return self.share * REFERENCE_DAILY_VOLUME

    @property
    def allocation(self) -> float:
        """SR/s guaranteed while traffic management is active."""
        budget = REFERENCE_THRESHOLD * REFERENCE_CAPACITY
        return max(ALLOCATION_FLOOR, round(ALLOCATED_SHARE * budget * self.share, 1))

    def streams(self, volume: float | None = None) -> tuple[Stream, ...]:
        """Its ordinary day: ``volume`` SRs (default its reference volume) split by class."""
        volume = self.daily_volume if volume is None else volume
        if self.kind == "network":
            mixes = (_NETWORK_NIGHT_MIX, _NETWORK_DAY_MIX)
        elif self.prepay_heavy:
            mixes = (_PREPAY_NIGHT_MIX, _PREPAY_DAY_MIX)
        else:
            mixes = (_NIGHT_MIX, _DAY_MIX)
        n = night(volume * 0.7, shift=self.shift)
        d = daytime(volume * 0.3, shift=self.shift)
        classes = sorted(set(mixes[0]) | set(mixes[1]))
        return tuple(
            Stream(n * mixes[0].get(c, 0.0) + d * mixes[1].get(c, 0.0), int(c)) for c in classes
        )

    def user(self, *, extra: tuple[Stream, ...] = (), open_loop: bool = False) -> User:
        """This member as a simulated User (with ``extra`` demand on top of its day)."""
        client: Client | OpenLoop = OpenLoop() if open_loop else Client()
        return User(id=self.id, name=self.name, demand=self.streams() + extra, client=client)


def _population() -> tuple[Member, ...]:
    raw: list[tuple[str, str, float, bool]] = []
    for i, share in enumerate([14.0, 12.0, 10.0, 8.5, 7.0, 6.0]):
        raw.append((f"Supplier L{i + 1}", "large", share, i in (0, 3)))
    medium = [3.2, 2.9, 2.6, 2.3, 2.1, 1.9, 1.7, 1.5, 1.3, 1.1]
    for i, share in enumerate(medium):
        raw.append((f"Supplier M{i + 1}", "medium", share, i in (1, 4, 8)))
    for i in range(24):
        raw.append((f"Supplier S{i + 1}", "small", 1.0 * 0.9**i, i % 3 == 1))
    for i in range(6):
        raw.append((f"DNO {i + 1}", "network", 1.0, False))
    for i in range(4):
        raw.append((f"GT {i + 1}", "network", 0.5, False))
    total = sum(r[2] for r in raw)
    members = []
    for i, (name, kind, share, prepay) in enumerate(raw):
        # EUI-64 User IDs; days shifted by up to 10 minutes either way.
        shift = float(((i * 7919) % 21 - 10) * 60)
        members.append(
            Member(f"90-B3-D5-1F-30-{i + 1:02X}-00-00", name, kind, share / total, prepay, shift)
        )
    return tuple(members)


_MEMBERS = _population()


def reference_population() -> Mapping[str, Member]:
    """The 50 reference Users by name (``"Supplier L1"`` ... ``"GT 4"``)."""
    return MappingProxyType({m.name: m for m in _MEMBERS})


def reference_users() -> tuple[User, ...]:
    """The 50 reference Users on an ordinary day, each behind srtm.client."""
    return tuple(m.user() for m in _MEMBERS)


def reference_policy(**overrides: object) -> TrafficPolicy:
    """1,350 SR/s, threshold 0.8, the reference allocations, a recomputation per second.

    Everything else is :class:`~srtm.TrafficPolicy`'s default. ``overrides`` replace
    fields, for example ``control_period=0.25`` for the core's default of four
    recomputations a window.
    """
    fields: dict[str, object] = {
        "capacity": REFERENCE_CAPACITY,
        "threshold": REFERENCE_THRESHOLD,
        "allocations": {m.id: m.allocation for m in _MEMBERS},
        "control_period": REFERENCE_CONTROL_PERIOD,
    }
    fields.update(overrides)
    return TrafficPolicy(**fields)  # type: ignore[arg-type]
