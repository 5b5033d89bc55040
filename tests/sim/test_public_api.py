"""srtm.sim's public surface: everything exported resolves, nothing public is missing."""

from __future__ import annotations

import srtm.sim


def test_all_names_resolve() -> None:
    for name in srtm.sim.__all__:
        assert getattr(srtm.sim, name) is not None, name


def test_all_is_complete() -> None:
    public = {name for name in vars(srtm.sim) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(srtm.sim, name)).__name__ == "module"}
    assert public - modules - {"annotations"} <= set(srtm.sim.__all__)


def test_errors_share_the_package_root() -> None:
    for error in (srtm.sim.ScenarioError, srtm.sim.UnknownScenario, srtm.sim.OutputError):
        assert issubclass(error, srtm.sim.SimulationError)
        assert issubclass(error, srtm.SrtmError)
