"""``run_scenario``: find a scenario, run it both ways, measure it, write what it showed."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srtm.sim._builtin import SCENARIOS
from srtm.sim._errors import OutputError, ScenarioError, UnknownScenario
from srtm.sim._metrics import RunFigures, figures, focus_span
from srtm.sim._runner import compile_scenario, simulate
from srtm.sim._scenario import Scenario

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

    from rich.console import Console

    from srtm.sim._runner import Compiled, Run

__all__ = ["Result", "load_scenario", "prepare_output", "run_scenario"]


def load_scenario(name: str | Scenario) -> Scenario:
    """A built-in scenario by name, a :class:`Scenario`, or ``FILE.py:NAME`` / ``module:NAME``.

    ``NAME`` may be a Scenario or a function of no arguments returning one.
    """
    if isinstance(name, Scenario):
        return name
    if not isinstance(name, str):
        raise UnknownScenario(repr(name), SCENARIOS, f"not a scenario name: {name!r}")
    if name in SCENARIOS:
        return SCENARIOS[name]()
    if ":" not in name:
        raise UnknownScenario(name, SCENARIOS)
    where, _, attr = name.rpartition(":")
    module = _load_module(name, where)
    found = getattr(module, attr, None)
    if found is None:
        raise UnknownScenario(name, SCENARIOS, f"{where} has no {attr!r}")
    if callable(found) and not isinstance(found, Scenario):
        found = found()
    if not isinstance(found, Scenario):
        raise UnknownScenario(
            name, SCENARIOS, f"{name} is a {type(found).__name__}, not a srtm.sim.Scenario"
        )
    return found


def _load_module(name: str, where: str) -> Any:
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise UnknownScenario(name, SCENARIOS, f"no such file: {where}")
        spec = importlib.util.spec_from_file_location(f"srtm_sim_user_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise UnknownScenario(name, SCENARIOS, f"cannot load {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(where)
    except ImportError as exc:
        raise UnknownScenario(name, SCENARIOS, f"cannot import {where}: {exc}") from exc


def prepare_output(out: str | os.PathLike[str]) -> Path:
    """Create the output folder if need be and check it can be written, else OutputError.

    Only the last folder is created: its parent must exist, as for ``srtm demo --out``,
    so a mistyped path fails clearly instead of growing folders somewhere unexpected
    (``/no/such/dir`` would otherwise appear at the filesystem root).
    """
    path = Path(out)
    try:
        path.mkdir(exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(str(path), "it exists and is not a folder") from exc
    except FileNotFoundError as exc:
        raise OutputError(
            str(path),
            f"the folder {str(path.parent)!r} does not exist "
            "(only the last folder of the path is created: make the others first)",
        ) from exc
    except OSError as exc:
        raise OutputError(str(path), exc.strerror or str(exc)) from exc
    if not path.is_dir():
        raise OutputError(str(path), "it exists and is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".srtm-write-test-"):
            pass
    except OSError as exc:
        raise OutputError(str(path), exc.strerror or str(exc)) from exc
    return path


@dataclass(frozen=True, eq=False)
class Result:
    """A scenario run with traffic management (``tm``) and without it (``fcfs``)."""

    scenario: Scenario
    compiled: Compiled
    tm: Run
    fcfs: Run
    focus: tuple[int, int]  # windows
    tm_figures: RunFigures
    fcfs_figures: RunFigures
    wall: float  # seconds of real time, both runs and the figures
    cpu: float = 0.0  # seconds of this process's CPU time for the same
    files: list[Path] = field(default_factory=list)

    @property
    def scale(self) -> float:
        """The time compression it ran at (1.0: a full day is 86,400 windows)."""
        return self.compiled.scale

    def summary(self) -> dict[str, Any]:
        """Everything in the table and more, JSON-ready."""
        from srtm.sim._report import summary

        return summary(self)

    def print(self, console: Console | None = None, *, all_users: bool = False) -> None:
        """Print the tables with rich."""
        from srtm.sim._report import render

        render(self, console, all_users=all_users)

    def write(self, out: str | os.PathLike[str]) -> list[Path]:
        """Write plots, the summary JSON and the table into ``out/<scenario name>/``."""
        from srtm.sim._plots import plot_all
        from srtm.sim._report import table_markdown

        folder = prepare_output(Path(out) / self.scenario.name)
        written = plot_all(self, folder)
        summary = folder / "summary.json"
        summary.write_text(json.dumps(self.summary(), indent=2) + "\n")
        table = folder / "table.md"
        table.write_text(table_markdown(self))
        written += [summary, table]
        self.files.extend(written)
        return written


def run_scenario(
    name_or_scenario: str | Scenario,
    *,
    scale: float = 1.0,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    exact: bool = False,
    console: Console | None = None,
) -> Result:
    """Run a scenario with traffic management and without it, side by side.

    ``name_or_scenario``: a built-in name (see :data:`SCENARIOS`), a :class:`Scenario`,
    or ``FILE.py:NAME`` / ``module:NAME``. ``scale`` compresses time (0.1: a day in
    8,640 windows, same rates). ``out``: a folder to write the plots, ``summary.json``
    and ``table.md`` into (in a subfolder named after the scenario); checked before the
    run starts. ``progress``: show a rich progress bar. ``exact``: send every offer
    through ``Gate.decide`` (slower, same results).
    """
    scenario = load_scenario(name_or_scenario)
    compiled = compile_scenario(scenario, scale)
    folder = prepare_output(out) if out is not None else None
    started, cpu = time.perf_counter(), time.process_time()
    if progress:
        tm, fcfs = _with_progress(compiled, exact, console)
    else:
        tm, fcfs = simulate(compiled, exact=exact)
    span = focus_span(compiled, tm, fcfs)
    result = Result(
        scenario=scenario,
        compiled=compiled,
        tm=tm,
        fcfs=fcfs,
        focus=span,
        tm_figures=figures(tm, span),
        fcfs_figures=figures(fcfs, span),
        wall=time.perf_counter() - started,
        cpu=time.process_time() - cpu,
    )
    if folder is not None:
        result.write(folder)
    return result


def _with_progress(compiled: Compiled, exact: bool, console: Console | None) -> tuple[Run, Run]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(compiled.scenario.name, total=compiled.windows)
        advance: Callable[[int], None] = lambda n: bar.advance(task, n)  # noqa: E731
        return simulate(compiled, exact=exact, on_progress=advance)


def check_scale(scale: float) -> float:
    """``scale`` if usable, else ScenarioError (for the CLI, before any work)."""
    if not 0 < scale <= 10:
        raise ScenarioError("scale", f"must be in (0, 10], got {scale!r}")
    return scale
