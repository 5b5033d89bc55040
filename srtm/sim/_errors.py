"""The simulator's errors, under the package root :class:`srtm.SrtmError`.

    SrtmError
    └── SimulationError      something about a simulation cannot work
        ├── UnknownScenario  a scenario name (or FILE.py:NAME reference) that names nothing
        ├── ScenarioError    a Scenario that makes no sense (the message names the field)
        └── OutputError      the output folder cannot be created or written

A bad policy is the core's :class:`srtm.PolicyError`, raised when the
:class:`~srtm.TrafficPolicy` is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from srtm._errors import SrtmError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["OutputError", "ScenarioError", "SimulationError", "UnknownScenario"]


class SimulationError(SrtmError):
    """Root of the simulator's errors."""


class UnknownScenario(SimulationError, LookupError):
    """No scenario by that name; ``choices`` lists the built-in ones."""

    def __init__(self, name: str, choices: Iterable[str], detail: str | None = None) -> None:
        self.name = name
        self.choices: tuple[str, ...] = tuple(choices)
        message = detail or f"unknown scenario {name!r}"
        super().__init__(
            f"{message}; built-in scenarios: {', '.join(self.choices)} "
            "(or FILE.py:NAME / module:NAME for your own)"
        )


class ScenarioError(SimulationError, ValueError):
    """A scenario that cannot run: ``field`` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class OutputError(SimulationError, OSError):
    """The output folder cannot be created or written."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot write the output folder {path!r}: {reason}")
