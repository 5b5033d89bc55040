"""The public surface: everything exported is importable, and nothing public is missing."""

from __future__ import annotations

import importlib

import pytest

import srtm


@pytest.mark.parametrize("module", ["srtm", "srtm.middleware"])
def test_all_names_resolve(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_all_is_complete() -> None:
    public = {name for name in vars(srtm) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(srtm, name)).__name__ == "module"}
    assert public - modules - {"annotations"} <= set(srtm.__all__) | {"__version__"}


def test_errors_share_one_root() -> None:
    assert issubclass(srtm.PolicyError, srtm.SrtmError)
    assert issubclass(srtm.StorageError, srtm.SrtmError)
    assert issubclass(srtm.PolicyError, ValueError)  # a bad value, as Python sees it


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("srtm").joinpath("py.typed").is_file()
