"""A plain ``pip install srtm`` in a fresh venv: the core only, and clear words for extras.

A gateway that embeds the middleware must not pull a plotting stack, a web server or
two Redis clients. This builds the sdist and wheel from this checkout as a release
would (``python -m build``), checks them (``twine check``), installs the wheel into a
new virtual environment and looks at what it got.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Heavy or optional packages that only the extras may bring.
NOT_IN_CORE = [
    "matplotlib",
    "numpy",
    "rich",
    "uvicorn",
    "PIL",
    "coredis",
    "redis",
    "prometheus_client",
    # the aiohttp extra (the client's faster transport)
    "aiohttp",
    "yarl",
    "multidict",
    "frozenlist",
    "aiosignal",
    "propcache",
    "aiohappyeyeballs",
]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built from this checkout as a release would be."""
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=_clean_env(),
    )
    assert built.returncode == 0, built.stdout + built.stderr
    log = built.stdout + built.stderr
    # setuptools announces what it will stop supporting (a license table, say) this way.
    assert "Deprecat" not in log, log
    return out


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory, dist: Path) -> Path:
    """A new venv with the built wheel installed, as ``pip install srtm`` would; its python."""
    where = tmp_path_factory.mktemp("plain-venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    python = where / "bin" / "python"
    (wheel,) = dist.glob("srtm-*.whl")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True,
        env=_clean_env(),
        timeout=600,
    )
    return python


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PIP_USER"}}


def test_the_distributions_pass_twine_check(dist: Path) -> None:
    files = sorted(str(p) for p in dist.iterdir())
    assert len(files) == 2, files  # one sdist, one wheel
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_wheel_carries_the_license_and_the_type_marker(dist: Path) -> None:
    (wheel,) = dist.glob("srtm-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "srtm/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert "License-Expression: Apache-2.0" in meta
    assert "Classifier: Typing :: Typed" in meta


def _run(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = _clean_env()
    # Run from an empty folder so the checkout itself is not on sys.path.
    return subprocess.run(
        [str(python), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=python.parent,
        timeout=120,
        check=False,
    )


def test_core_install_has_no_extras(plain_venv: Path) -> None:
    probe = _run(
        plain_venv,
        "-c",
        "import importlib.util, json, sys; "
        f"print(json.dumps([m for m in {NOT_IN_CORE!r} if importlib.util.find_spec(m)]))",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]", f"the core install pulled {probe.stdout.strip()}"


def test_core_install_imports_the_middleware_and_the_client(plain_venv: Path) -> None:
    probe = _run(
        plain_venv,
        "-c",
        "import srtm, srtm.middleware, srtm.client; "
        "from srtm.middleware import ASGITrafficManager, WSGITrafficManager; "
        "print(srtm.__file__)",
    )
    assert probe.returncode == 0, probe.stderr
    # The installed copy, not this checkout.
    assert str(ROOT) not in probe.stdout
    assert "site-packages" in probe.stdout


def test_version_is_the_packages(plain_venv: Path) -> None:
    import srtm

    cli = _run(plain_venv, "-m", "srtm", "--version")
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == f"srtm {srtm.__version__}"
    meta = _run(plain_venv, "-c", "import importlib.metadata as m; print(m.version('srtm'))")
    assert meta.stdout.strip() == srtm.__version__


def test_demo_without_its_extra_names_the_extra(plain_venv: Path) -> None:
    for command in (["demo"], ["simulate", "normal-night"]):
        run = _run(plain_venv, "-m", "srtm", *command)
        assert run.returncode == 2, (command, run.stdout, run.stderr)
        assert "pip install 'srtm[demo]'" in run.stderr
        assert "Traceback" not in run.stderr


def test_redis_storage_without_its_extra_fails_when_the_policy_is_built(plain_venv: Path) -> None:
    run = _run(
        plain_venv,
        "-c",
        "import srtm\n"
        "try:\n"
        "    srtm.TrafficPolicy(capacity=100, storage='redis://127.0.0.1:1')\n"
        "except srtm.PolicyError as exc:\n"
        "    print(exc)\n",
    )
    assert run.returncode == 0, run.stderr
    assert "pip install 'srtm[redis]'" in run.stdout
