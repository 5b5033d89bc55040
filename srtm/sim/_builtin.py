"""The built-in scenarios: an ordinary day and the incidents the mechanism exists for.

Each is a function returning a :class:`~srtm.sim.Scenario` on the reference figures
(:mod:`srtm.sim._reference`); :data:`SCENARIOS` maps their names to them. Read them as
examples of writing your own.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from srtm.sim._classes import Priority
from srtm.sim._curves import at, burst
from srtm.sim._reference import (
    REFERENCE_CAPACITY,
    reference_policy,
    reference_population,
    reference_users,
)
from srtm.sim._scenario import Scenario, Stream, outage

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "SCENARIOS",
    "cold_snap",
    "denial_of_service",
    "dsp_outage",
    "normal_night",
    "runaway_user",
]


def normal_night() -> Scenario:
    """An ordinary day at the reference load: traffic management should never engage."""
    return Scenario(
        name="normal-night",
        description=(
            "An ordinary day: 5.4 million SRs from 50 Users, 70% of them between 00:00 and "
            "06:00, the peak minute about 20% of capacity. Traffic management should never "
            "engage and nobody should be refused."
        ),
        policy=reference_policy(),
        users=reference_users(),
        focus=(at("00:00"), at("06:00")),
    )


RUNAWAY = "Supplier M4"
RUNAWAY_RATE = 5_000.0  # SR/s: one User's 100 Mb line
RUNAWAY_START = at("01:20")


def runaway_user() -> Scenario:
    """A medium Supplier's back end sends a month's volume in minutes at the night peak."""
    pop = reference_population()
    culprit = pop[RUNAWAY]
    month = 30 * culprit.daily_volume
    duration = month / RUNAWAY_RATE
    flood = Stream(burst(start=RUNAWAY_START, duration=duration, rate=RUNAWAY_RATE), Priority.BULK)
    users = tuple(
        m.user(extra=(flood,), open_loop=True) if m.name == RUNAWAY else m.user()
        for m in pop.values()
    )
    return Scenario(
        name="runaway-user",
        description=(
            f"At 01:20, in the night peak, {RUNAWAY}'s back end re-sends a month's volume "
            f"({month / 1e6:.1f} million SRs) at its line rate of {RUNAWAY_RATE:,.0f} SR/s, "
            f"for {duration / 60:.0f} minutes, ignoring every refusal (its SRs bypass its "
            "client library). Everyone else carries on as usual."
        ),
        policy=reference_policy(),
        users=users,
        culprits=frozenset({culprit.id}),
    )


FLOODER = "Supplier S20"
FLOOD_RATE = 30_000.0  # SR/s: what the Gamma connections can carry
FLOOD_START = at("01:30")
FLOOD_DURATION = 600.0


def denial_of_service() -> Scenario:
    """One identity floods the gateway at 30,000 SR/s for ten minutes."""
    pop = reference_population()
    culprit = pop[FLOODER]
    flood = Stream(
        burst(start=FLOOD_START, duration=FLOOD_DURATION, rate=FLOOD_RATE), Priority.ROUTINE
    )
    users = tuple(
        m.user(extra=(flood,), open_loop=True) if m.name == FLOODER else m.user()
        for m in pop.values()
    )
    return Scenario(
        name="denial-of-service",
        description=(
            f"At 01:30 {FLOODER}'s identity (a small Supplier's stolen credentials) floods "
            f"the gateway at {FLOOD_RATE:,.0f} SR/s, what the Gamma connections can carry, "
            "for ten minutes."
        ),
        policy=reference_policy(),
        users=users,
        culprits=frozenset({culprit.id}),
    )


OUTAGE_START = at("01:00")
OUTAGE_DURATION = 3600.0


def dsp_outage() -> Scenario:
    """The DSP stops for an hour at night; the clients' backlogs return when it is back."""
    return Scenario(
        name="dsp-outage",
        description=(
            "From 01:00 to 02:00 the DSP processes nothing (capacity 0), then comes back "
            f"at {REFERENCE_CAPACITY:,.0f} SR/s. Every User's client keeps queueing its SRs "
            "(mostly bulk reads at night, some top-ups and customer work), retries after "
            "each Retry-After and, when service resumes, sends its top-ups first."
        ),
        policy=reference_policy(),
        users=reference_users(),
        incidents=outage(start=OUTAGE_START, duration=OUTAGE_DURATION),
    )


COLD = "Supplier L1"
COLD_START = at("17:00")
COLD_DURATION = 3 * 3600.0
COLD_TOPUPS = 500.0  # SR/s of extra top-ups and emergency credit
BULK_START = at("16:00")
BULK_DURATION = 4 * 3600.0
BULK_RATE = 900.0  # SR/s of profile-data reads it keeps running


def cold_snap() -> Scenario:
    """A cold evening: one Supplier's top-ups surge past its allocation; its bulk continues."""
    pop = reference_population()
    culprit = pop[COLD]
    extra = (
        Stream(
            burst(start=COLD_START, duration=COLD_DURATION, rate=COLD_TOPUPS),
            Priority.PREPAYMENT,
        ),
        Stream(burst(start=BULK_START, duration=BULK_DURATION, rate=BULK_RATE), Priority.BULK),
    )
    users = tuple(m.user(extra=extra) if m.name == COLD else m.user() for m in pop.values())
    return Scenario(
        name="cold-snap",
        description=(
            f"A freezing evening. From 16:00 to 20:00 {COLD}, the largest prepayment "
            f"Supplier (allocation {culprit.allocation:g} SR/s), runs a bulk campaign of "
            f"profile-data reads at {BULK_RATE:,.0f} SR/s; from 17:00 to 20:00 its "
            f"customers' top-ups and emergency-credit requests surge by {COLD_TOPUPS:,.0f} "
            "SR/s, past its whole allocation. Its client (srtm.client) sends the top-ups "
            "first. At the reference load only such a combination can reach the threshold "
            "in the evening: everyone else sends about 25 SR/s."
        ),
        policy=reference_policy(),
        users=users,
    )


#: Built-in scenarios by name: each value builds a fresh :class:`Scenario`.
SCENARIOS: Mapping[str, Callable[[], Scenario]] = MappingProxyType(
    {
        "normal-night": normal_night,
        "runaway-user": runaway_user,
        "denial-of-service": denial_of_service,
        "dsp-outage": dsp_outage,
        "cold-snap": cold_snap,
    }
)
