"""srtm.sim: traffic scenarios on a virtual clock, with and without traffic management.

A :class:`Scenario` is a :class:`~srtm.TrafficPolicy`, the Users (each a
:class:`User` with demand :class:`Stream` s over the day and a :class:`Client` or an
:class:`OpenLoop` sender) and incidents (:class:`CapacityChange`, :func:`outage`).
:func:`run_scenario` runs it twice in lockstep: through the gateway's own engine
(:class:`srtm.Gate`: policy, fair share, governor and decision, ticked every control
period of virtual time) and through a first-come-first-served baseline, then measures
both and, given ``out``, writes plots, ``summary.json`` and ``table.md``::

    from srtm.sim import run_scenario

    result = run_scenario("dsp-outage", scale=0.1, out="srtm-simulate")
    result.print()
    result.tm_figures.well_behaved_share   # guarantee delivered to well-behaved Users

:data:`SCENARIOS` holds the built-in scenarios on the reference figures (1,350 SR/s,
5.4 million SRs a day, 50 Users); ``srtm simulate --help`` (or
``python -m srtm.sim --help``) explains them and how to write your own.
"""

from srtm.sim._api import Result, load_scenario, run_scenario
from srtm.sim._builtin import (
    SCENARIOS,
    cold_snap,
    denial_of_service,
    dsp_outage,
    normal_night,
    runaway_user,
)
from srtm.sim._classes import Priority
from srtm.sim._curves import (
    DAY,
    Curve,
    at,
    burst,
    constant,
    daily,
    daytime,
    function,
    night,
    piecewise,
)
from srtm.sim._errors import OutputError, ScenarioError, SimulationError, UnknownScenario
from srtm.sim._metrics import RunFigures, UserFigures, jain
from srtm.sim._reference import (
    REFERENCE_CAPACITY,
    REFERENCE_CONTROL_PERIOD,
    REFERENCE_DAILY_VOLUME,
    REFERENCE_THRESHOLD,
    Member,
    reference_policy,
    reference_population,
    reference_users,
)
from srtm.sim._runner import Run
from srtm.sim._scenario import (
    CapacityChange,
    Client,
    OpenLoop,
    Scenario,
    Stream,
    User,
    outage,
    streams,
)

__all__ = [
    "DAY",
    "REFERENCE_CAPACITY",
    "REFERENCE_CONTROL_PERIOD",
    "REFERENCE_DAILY_VOLUME",
    "REFERENCE_THRESHOLD",
    "SCENARIOS",
    "CapacityChange",
    "Client",
    "Curve",
    "Member",
    "OpenLoop",
    "OutputError",
    "Priority",
    "Result",
    "Run",
    "RunFigures",
    "Scenario",
    "ScenarioError",
    "SimulationError",
    "Stream",
    "UnknownScenario",
    "User",
    "UserFigures",
    "at",
    "burst",
    "cold_snap",
    "constant",
    "daily",
    "daytime",
    "denial_of_service",
    "dsp_outage",
    "function",
    "jain",
    "load_scenario",
    "night",
    "normal_night",
    "outage",
    "piecewise",
    "reference_policy",
    "reference_population",
    "reference_users",
    "run_scenario",
    "runaway_user",
    "streams",
]
