"""What the demo runs: the gateway's policy, the Suppliers, the incident and the verdict's bars."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from srtm._errors import SrtmError
from srtm.policy import TrafficPolicy

__all__ = ["DEFAULT_SUPPLIERS", "DemoConfig", "DemoConfigError", "Supplier"]

_LABEL = re.compile(r"^[A-Za-z0-9]{1,8}$")


class DemoConfigError(SrtmError, ValueError):
    """A demo setting that cannot work; the message names the setting."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True, slots=True, kw_only=True)
class Supplier:
    """One simulated Service User: its allocation, what it sends, and whether it runs amok.

    ``rate`` is the SRs per second its back end submits to its client (Poisson arrivals);
    ``mix`` the share of each Service Reference Variant among them. A ``runaway``
    Supplier also floods bulk reads, bypassing its client, while the incident lasts.
    """

    label: str
    user_id: str
    allocation: float
    rate: float
    mix: tuple[tuple[str, float], ...] = (("2.2", 0.3), ("1.2.1", 0.2), ("4.8.1", 0.5))
    runaway: bool = False

    def __post_init__(self) -> None:
        if not _LABEL.match(self.label):
            raise DemoConfigError("label", f"must be 1-8 letters or digits, got {self.label!r}")
        for name in ("allocation", "rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise DemoConfigError(f"{self.label}.{name}", f"must be > 0 SR/s, got {value!r}")
        total = sum(share for _, share in self.mix)
        if not self.mix or any(share < 0 for _, share in self.mix) or abs(total - 1) > 1e-6:
            raise DemoConfigError(
                f"{self.label}.mix", f"shares must be >= 0 and add up to 1, got {total}"
            )


#: Five Suppliers with unequal allocations adding up to the budget (0.8 x 200 SR/s).
#: Together they send 106 SR/s: about half of capacity, so traffic management stays off
#: until D runs amok. The IDs are EUI-64s, as DCC User IDs are.
DEFAULT_SUPPLIERS: tuple[Supplier, ...] = (
    Supplier(label="A", user_id="90-B3-D5-1F-30-01-00-0A", allocation=50, rate=36),
    Supplier(label="B", user_id="90-B3-D5-1F-30-01-00-0B", allocation=40, rate=28),
    Supplier(label="C", user_id="90-B3-D5-1F-30-01-00-0C", allocation=30, rate=20),
    Supplier(label="D", user_id="90-B3-D5-1F-30-01-00-0D", allocation=25, rate=12, runaway=True),
    Supplier(label="E", user_id="90-B3-D5-1F-30-01-00-0E", allocation=15, rate=10),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoConfig:
    """The whole demo: validated when built, so a bad setting fails before anything starts.

    The runaway floods from ``amok_from`` to ``amok_to`` (fractions of ``duration``) on
    ``flood_connections`` connections, as fast as they go up to ``flood_rate`` SR/s
    (None: no cap). The default, three times capacity, is about the DCC's ratio of one
    User on a 100 Mb line (about 5,000 SR/s) to the back end (1,350 SR/s): 3.7. More
    would only spend the demo machine's CPU on refusals.

    The verdict passes when the well-behaved Users had at least ``min_share`` of their
    requests admitted and every SR answered, their top-ups during the flood were all
    admitted at the first attempt, the runaway got no more than ``fair_share_slack`` times
    its fair share (computed after the fact from each window's measured demand; the
    gate decides on estimates a fraction of a window old, and a window's admissions are
    never taken back when a later recomputation lowers a limit) plus one request per
    window for rounding, traffic management was on for the flood only (off before it,
    off again before the run ended), and no window admitted more than capacity.
    """

    duration: float = 30.0
    capacity: float = 200.0
    threshold: float = 0.8
    window: float = 1.0
    suppliers: tuple[Supplier, ...] = DEFAULT_SUPPLIERS
    amok_from: float = 0.3
    amok_to: float = 0.7
    flood_connections: int = 8
    flood_rate: float | None = 600.0
    seed: int = 1
    min_share: float = 0.99
    fair_share_slack: float = 1.25
    _labels: dict[str, Supplier] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duration) and 0 < self.duration <= 3600):
            raise DemoConfigError(
                "duration", f"must be more than 0 and at most 3600 seconds, got {self.duration!r}"
            )
        if not (0 <= self.amok_from < self.amok_to <= 1):
            raise DemoConfigError(
                "amok_from/amok_to",
                f"need 0 <= from < to <= 1, got {self.amok_from}, {self.amok_to}",
            )
        if (self.amok_to - self.amok_from) * self.duration < 3 * self.window:
            raise DemoConfigError("duration", "too short: the incident must last three windows")
        if self.flood_rate is not None and not (
            math.isfinite(self.flood_rate) and self.flood_rate > 0
        ):
            raise DemoConfigError(
                "flood_rate", f"must be > 0 SR/s or None, got {self.flood_rate!r}"
            )
        if self.flood_connections < 1:
            raise DemoConfigError(
                "flood_connections", f"must be >= 1, got {self.flood_connections}"
            )
        labels = [s.label for s in self.suppliers]
        if len(set(labels)) != len(labels) or len({s.user_id for s in self.suppliers}) != len(
            labels
        ):
            raise DemoConfigError("suppliers", "labels and User IDs must be unique")
        if sum(s.runaway for s in self.suppliers) != 1:
            raise DemoConfigError("suppliers", "exactly one Supplier must run amok")
        if len(self.suppliers) < 2:
            raise DemoConfigError("suppliers", "at least one well-behaved Supplier is needed")
        self.policy()  # a policy that cannot work fails here, naming its field
        object.__setattr__(self, "_labels", {s.label: s for s in self.suppliers})

    def policy(self) -> TrafficPolicy:
        """The gateway's policy: capacity, threshold and the Suppliers' allocations."""
        return TrafficPolicy(
            capacity=self.capacity,
            threshold=self.threshold,
            window=self.window,
            allocations={s.user_id: s.allocation for s in self.suppliers},
            storage="memory://",
        )

    @property
    def budget(self) -> float:
        """The operating threshold in SR/s: traffic management engages here."""
        return self.capacity * self.threshold

    @property
    def runaway(self) -> Supplier:
        """The Supplier that runs amok."""
        return next(s for s in self.suppliers if s.runaway)

    @property
    def well_behaved(self) -> tuple[Supplier, ...]:
        """Every Supplier but the runaway."""
        return tuple(s for s in self.suppliers if not s.runaway)

    @property
    def amok_start(self) -> float:
        """Seconds into the run when the flood starts."""
        return self.amok_from * self.duration

    @property
    def amok_end(self) -> float:
        """Seconds into the run when the flood stops."""
        return self.amok_to * self.duration

    def by_label(self, label: str) -> Supplier:
        """The Supplier called ``label``."""
        return self._labels[label]
