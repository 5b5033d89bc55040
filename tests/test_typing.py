"""The public surface is 100% type-complete, as pyright's ``--verifytypes`` measures it.

pyright only resolves an installed, non-editable package, so this builds a fresh venv,
installs this checkout (with the ``prometheus`` extra, whose base class GatewayMetrics
extends) and pyright into it, and runs pyright from there with PYTHONPATH unset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Generous: a venv build plus two pip installs on a loaded 2-core machine.
TIMEOUT = 900


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in ``cwd`` with ``env``; the caller asserts on the outcome."""
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def test_public_surface_is_type_complete(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bindir = env_dir / ("Scripts" if sys.platform == "win32" else "bin")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(env_dir)
    installed = _run(
        [
            str(bindir / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            f"{ROOT}[prometheus]",
            "pyright>=1.1.400",
        ],
        env,
        tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-4000:]
    checked = _run(
        [str(bindir / "pyright"), "--verifytypes", "srtm", "--ignoreexternal", "--outputjson"],
        env,
        tmp_path,
    )
    # pyright exits 1 when the score is below 100%: the JSON says why, so read it first.
    assert checked.stdout, checked.stderr[-4000:]
    report: dict[str, Any] = json.loads(checked.stdout)["typeCompleteness"]
    offending = [
        f"{s['name']}: {'; '.join(d['message'] for d in s['diagnostics'])}"
        for s in report["symbols"]
        if not s["isTypeKnown"] or s.get("isTypeAmbiguous")
    ]
    assert report["packageName"] == "srtm"
    assert report["exportedSymbolCounts"]["withKnownType"] > 0
    assert report["completenessScore"] == 1.0, "\n".join(offending)
    assert offending == []
