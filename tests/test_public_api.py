"""The public surface, pinned: a change to any ``__all__`` is a visible change here.

``srtm``, ``srtm.middleware``, ``srtm.client``, ``srtm.metrics``, ``srtm.sim`` and
``srtm.aio`` are the public API; the other listed modules are the advanced namespace
(machinery, importable and stable, but not re-exported at the top level). See
docs/stability.md.
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import srtm

if TYPE_CHECKING:
    from srtm.ledger import Ledger

#: Every public module and the exact names it exports (sorted).
SURFACE: dict[str, list[str]] = {
    "srtm": [
        "DEFAULT_POOL",
        "Decision",
        "FrontEndTrust",
        "Gate",
        "Identity",
        "LeasePolicy",
        "PolicyError",
        "Reason",
        "RequestView",
        "SrtmError",
        "StorageError",
        "TrafficPolicy",
        "Unidentified",
        "__version__",
        "identify_by_client_certificate",
        "identify_by_headers",
        "pool_by_header",
        "pool_by_path_prefix",
    ],
    "srtm.middleware": ["ASGITrafficManager", "WSGITrafficManager"],
    "srtm.client": [
        "AsyncServiceRequestClient",
        "AttemptsExhaustedError",
        "ClientClosedError",
        "ClientError",
        "ClientEvent",
        "ClientStats",
        "Clock",
        "DEFAULT_CLASSES",
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
    ],
    "srtm.metrics": [
        "GatewayMetrics",
        "LATENCY_BUCKETS",
        "OTHER",
        "OUTCOMES",
        "UNIDENTIFIED",
        "UNKNOWN_POOL",
    ],
    "srtm.sim": [
        "CapacityChange",
        "Client",
        "Curve",
        "DAY",
        "Member",
        "OpenLoop",
        "OutputError",
        "Priority",
        "REFERENCE_CAPACITY",
        "REFERENCE_CONTROL_PERIOD",
        "REFERENCE_DAILY_VOLUME",
        "REFERENCE_THRESHOLD",
        "Result",
        "Run",
        "RunFigures",
        "SCENARIOS",
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
    ],
    "srtm.aio": ["AsyncGate"],
    "srtm.gate": ["Decision", "Gate", "GateCore", "Reason", "normalise_pools"],
    "srtm.governor": ["COLLECTIVE", "Governor", "GovernorState", "MAX_MEMBERS"],
    "srtm.ledger": [
        "Control",
        "Ledger",
        "MemoryLedger",
        "Outcome",
        "Quota",
        "Reason",
        "RedisLedger",
        "Synced",
        "admit_count",
        "grant_count",
        "ledger_for",
        "redis_keys",
        "room",
        "store_keys",
    ],
    "srtm.fairshare": ["fair_share", "share_valid", "water_level"],
    "srtm.identity": [
        "DEFAULT_POOL",
        "FrontEndTrust",
        "Identify",
        "Identity",
        "PoolOf",
        "RequestView",
        "Subject",
        "identify_by_client_certificate",
        "identify_by_headers",
        "pool_by_header",
        "pool_by_path_prefix",
    ],
    "srtm.lease": ["Lease", "LeasePolicy", "grant_count"],
    "srtm.policy": [
        "MIN_CONTROL_PERIOD",
        "SUPPORTED_SCHEMES",
        "TrafficPolicy",
        "parse_duis_version",
    ],
    "srtm.demo": [
        "Check",
        "DEFAULT_SUPPLIERS",
        "DemoConfig",
        "DemoConfigError",
        "Report",
        "Supplier",
        "run_demo",
    ],
}


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_all_is_pinned(module: str) -> None:
    assert sorted(importlib.import_module(module).__all__) == SURFACE[module]


def _documented_by_comment(name: str) -> bool:
    """Whether a ``#:`` comment (Sphinx/mkdocstrings style) sits above ``name =`` in srtm."""
    pattern = re.compile(rf"^#:.*\n(?:#:.*\n)*{re.escape(name)}\b", re.MULTILINE)
    root = Path(srtm.__file__).parent
    return any(pattern.search(path.read_text()) for path in root.rglob("*.py"))


@pytest.mark.parametrize("module", sorted(SURFACE))
def test_all_names_resolve_and_are_documented(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__doc__, module
    undocumented = []
    for name in mod.__all__:
        obj = getattr(mod, name)  # AttributeError fails the test: the name must resolve
        if isinstance(obj, type) or inspect.isfunction(obj):
            documented = bool((obj.__doc__ or "").strip())
        else:  # a constant or a type alias: documented by a ``#:`` comment
            documented = _documented_by_comment(name)
        if not documented:
            undocumented.append(name)
    assert undocumented == [], f"{module}: no docstring on {undocumented}"


def test_all_is_complete() -> None:
    public = {name for name in vars(srtm) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(srtm, name)).__name__ == "module"}
    assert public - modules - {"annotations"} <= set(srtm.__all__) | {"__version__"}


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("Governor", "srtm.governor"),
        ("GovernorState", "srtm.governor"),
        ("Quota", "srtm.ledger"),
        ("fair_share", "srtm.fairshare"),
    ],
)
def test_moved_names_warn_and_still_resolve(name: str, module: str) -> None:
    assert name not in srtm.__all__
    with pytest.warns(DeprecationWarning, match=f"from {module} import {name}"):
        moved = getattr(srtm, name)
    assert moved is getattr(importlib.import_module(module), name)


def test_current_names_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in srtm.__all__:
            getattr(srtm, name)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nonesuch'"):
        srtm.Nonesuch  # noqa: B018


def test_async_gate_is_public() -> None:
    from srtm.aio import AsyncGate
    from srtm.aio.gate import AsyncGate as Same

    assert AsyncGate is Same


def test_errors_share_one_root() -> None:
    assert issubclass(srtm.PolicyError, srtm.SrtmError)
    assert issubclass(srtm.StorageError, srtm.SrtmError)
    assert issubclass(srtm.PolicyError, ValueError)  # a bad value, as Python sees it


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("srtm").joinpath("py.typed").is_file()


def test_gate_takes_a_ledger_factory() -> None:
    """The simulator's seam: a Gate counts in the ledger its factory builds, once per URI."""
    from srtm.sim._ledger import SimLedger

    built: list[srtm.TrafficPolicy] = []
    ledger = SimLedger()

    def factory(policy: srtm.TrafficPolicy) -> Ledger:
        built.append(policy)
        return ledger

    pools = {
        "a": srtm.TrafficPolicy(capacity=100, allocations={"u": 10}),
        "b": srtm.TrafficPolicy(capacity=50, allocations={"u": 5}),
    }
    gate = srtm.Gate(pools, clock=lambda: 10.0, background=False, ledger_factory=factory)
    assert len(built) == 1  # both pools name memory://: one ledger, shared
    decision = gate.decide(srtm.Identity("u", "4.1", "a"), 3, now=10.0)
    assert decision.admitted
    admitted, total, _ = ledger.counts("a", gate.window_of(gate.pool("a"), 10.0))
    assert (dict(admitted), total) == ({"u": 3}, 3)
    assert ledger.counts("b", gate.window_of(gate.pool("b"), 10.0))[1] == 0
