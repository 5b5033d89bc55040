"""Priority classes: which SRs a User sends first.

The gateway imposes no order; each User orders its own. The default below follows the
domain brief: prepayment work first, then customer-facing work, installation, routine
changes, and bulk reads last. A User replaces it with a mapping (variant -> class, falling
back to the default for variants it does not list) or a function (variant -> class).
Lower numbers are more urgent; any int is a class.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "DEFAULT_CLASSES",
    "Priority",
    "PriorityPolicy",
    "default_priority",
]


class Priority(enum.IntEnum):
    """The default priority classes, most urgent first."""

    PREPAYMENT = 0
    CUSTOMER = 1
    INSTALLATION = 2
    ROUTINE = 3
    BULK = 4


#: Service Reference Variant -> default class, from the domain brief's table.
DEFAULT_CLASSES: Mapping[str, Priority] = MappingProxyType(
    {
        # prepayment, most urgent
        "2.2": Priority.PREPAYMENT,  # Top Up Device
        "2.5": Priority.PREPAYMENT,  # Activate Emergency Credit
        "1.5": Priority.PREPAYMENT,  # Update Meter Balance
        "7.1": Priority.PREPAYMENT,  # Enable Supply
        "7.3": Priority.PREPAYMENT,  # Arm Supply
        # customer-facing
        "4.3": Priority.CUSTOMER,  # Read Instantaneous Prepay Values
        "4.18": Priority.CUSTOMER,  # Read Meter Balance
        "2.1": Priority.CUSTOMER,  # Update Prepay Configuration
        "2.3": Priority.CUSTOMER,  # Update Debt
        "1.6": Priority.CUSTOMER,  # Update Payment Mode
        "7.2": Priority.CUSTOMER,  # Disable Supply
        "7.4": Priority.CUSTOMER,  # Read Supply Status
        "4.1.1": Priority.CUSTOMER,  # Read Instantaneous Import Registers
        # installation
        "8.1.1": Priority.INSTALLATION,  # Commission Device
        "8.7.1": Priority.INSTALLATION,  # Join Service
        "8.11": Priority.INSTALLATION,  # Update HAN Device Log
        "8.14.1": Priority.INSTALLATION,  # Communications Hub Status Update
        "12.2": Priority.INSTALLATION,  # Device Pre-notification
        # routine
        "1.1.1": Priority.ROUTINE,  # Update Import Tariff
        "1.2.1": Priority.ROUTINE,  # Update Price
        "3.1": Priority.ROUTINE,  # Display Message
        "6.11": Priority.ROUTINE,  # Synchronise Clock
        "6.23": Priority.ROUTINE,  # Update Security Credentials
        # bulk
        "4.6.1": Priority.BULK,  # Retrieve Import Daily Read Log
        "4.8.1": Priority.BULK,  # Read Active Import Profile Data
        "4.14": Priority.BULK,  # Read Prepayment Daily Read Log
        "4.17": Priority.BULK,  # Retrieve Daily Consumption Log
        "11.1": Priority.BULK,  # Update Firmware
        "11.2": Priority.BULK,  # Read Firmware Version
    }
)


def default_priority(variant: str) -> int:
    """The default class of a Service Reference Variant.

    Variants in the brief's table get their class; other ``8.x`` and ``12.x`` variants are
    installation work; everything else (other ``4.x`` reads included) is routine.
    """
    variant = variant.strip()
    known = DEFAULT_CLASSES.get(variant)
    if known is not None:
        return int(known)
    head = variant.split(".", 1)[0]
    if head in {"8", "12"}:
        return int(Priority.INSTALLATION)
    return int(Priority.ROUTINE)


Classifier = Callable[[str], int]


@dataclass(frozen=True, slots=True, kw_only=True)
class PriorityPolicy:
    """How the client orders queued SRs.

    ``order``: None for the default classes, a mapping variant -> class (variants it does
    not list keep their default class), or a function variant -> class.

    ``aging``: seconds of waiting worth one class. An SR of class ``c`` queued at ``t`` is
    served by the key ``c * aging + t``, so a bulk read (class 4) queued four ``aging``
    periods ago ranks with a top-up queued now: the lowest class always progresses, and
    within a class the order is FIFO. None turns aging off (strict priority).

    ``bulk_share``: the largest share of the User's rate (and of the in-flight slots) that
    SRs of class ``bulk_from`` or lower urgency may use, so an urgent SR never waits
    behind a full pipe of bulk reads. 1.0 lets bulk use everything.
    """

    order: Mapping[str, int] | Classifier | None = None
    aging: float | None = 60.0
    bulk_share: float = 0.8
    bulk_from: int = Priority.BULK

    def __post_init__(self) -> None:
        if self.aging is not None and not (math.isfinite(self.aging) and self.aging > 0):
            raise ValueError(
                f"aging: must be a positive number of seconds or None, got {self.aging!r}"
            )
        if not (0.0 < self.bulk_share <= 1.0):
            raise ValueError(f"bulk_share: must be in (0, 1], got {self.bulk_share!r}")
        if self.order is not None and not (isinstance(self.order, Mapping) or callable(self.order)):
            raise TypeError(
                f"order: must be a mapping variant -> class, a function or None, got {self.order!r}"
            )
        if isinstance(self.order, Mapping):
            for variant, cls in self.order.items():
                if isinstance(cls, bool) or not isinstance(cls, int):
                    raise TypeError(f"order[{variant!r}]: a class must be an int, got {cls!r}")

    def classify(self, variant: str, override: int | None = None) -> int:
        """The class of an SR: its own ``priority`` if set, else the order's verdict."""
        if override is not None:
            return override
        if self.order is None:
            return default_priority(variant)
        if isinstance(self.order, Mapping):
            cls = self.order.get(variant.strip())
            return default_priority(variant) if cls is None else int(cls)
        cls = self.order(variant)
        if isinstance(cls, bool) or not isinstance(cls, int):
            raise TypeError(f"the priority function returned {cls!r} for {variant!r}: not an int")
        return int(cls)

    def is_bulk(self, cls: int) -> bool:
        """Whether a class is held to ``bulk_share``."""
        return cls >= self.bulk_from

    @classmethod
    def coerce(
        cls, value: PriorityPolicy | Mapping[str, int] | Classifier | None
    ) -> PriorityPolicy:
        """A policy from what a client constructor accepts (a mapping or function is the order)."""
        if isinstance(value, PriorityPolicy):
            return value
        return cls(order=value)
