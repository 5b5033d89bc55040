"""A plain ``pip install srtm`` in a fresh venv: the core only, and clear words for extras.

A gateway that embeds the middleware must not pull a plotting stack, a web server or
two Redis clients. This builds the package from this checkout into a new virtual
environment (pip, as a user would) and looks at what it got.
"""

from __future__ import annotations

import os
import subprocess
import venv
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
]


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with ``pip install <this checkout>`` and nothing else; its python."""
    where = tmp_path_factory.mktemp("plain-venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    python = where / "bin" / "python"
    # Built from a copy of the tree would be slower and no truer: pip builds a wheel
    # from the source directory, exactly what `pip install .` does for a user.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PIP_USER"}}
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        check=True,
        env=env,
        timeout=600,
    )
    return python


def _run(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
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
