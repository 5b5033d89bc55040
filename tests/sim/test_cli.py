"""``srtm simulate`` / ``python -m srtm.sim``: help, errors, and what a run writes."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from srtm.sim import SCENARIOS
from srtm.sim.cli import add_parser, build_parser, main

if TYPE_CHECKING:
    from pathlib import Path

PNG = b"\x89PNG\r\n\x1a\n"


def run(argv: list[str]) -> int:
    return main(build_parser().parse_args(argv))


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--list"]) == 0
    out = capsys.readouterr().out
    for name in SCENARIOS:
        assert name in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["no-such-scenario"], "unknown scenario 'no-such-scenario'; built-in scenarios:"),
        (["runaway-user", "--threshold", "1.5"], "bad policy: threshold: must be in (0, 1]"),
        (["runaway-user", "--capacity", "-3"], "bad policy: capacity"),
        (["runaway-user", "--control-period", "0"], "bad policy: control_period"),
        (["runaway-user", "--scale", "0"], "scale: must be in (0, 10]"),
    ],
)
def test_errors_are_clear_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("srtm simulate: ")
    assert says in err


def test_unwritable_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    assert run(["runaway-user", "--out", str(blocker / "sub")]) == 2
    assert "cannot write the output folder" in capsys.readouterr().err
    assert run(["runaway-user", "--out", str(blocker)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_a_missing_parent_folder_is_refused_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As ``srtm demo --out``: a mistyped path must not grow folders (``/no/such/dir``).
    target = tmp_path / "no" / "such" / "dir"
    assert run(["runaway-user", "--no-progress", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("srtm simulate: cannot write the output folder")
    assert f"the folder {str(target.parent)!r} does not exist" in err
    assert not (tmp_path / "no").exists()


def test_the_last_output_folder_is_created(tmp_path: Path) -> None:
    out = tmp_path / "fresh"
    assert run(["runaway-user", "--scale", "0.01", "--no-progress", "--out", str(out)]) == 0
    assert (out / "runaway-user" / "summary.json").is_file()


def test_the_default_output_folder_is_in_the_current_folder() -> None:
    args = build_parser().parse_args([])
    assert args.out == "srtm-simulate"


def test_a_run_prints_the_tables_and_writes_plots_json_and_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(["denial-of-service", "--scale", "0.01", "--no-progress", "--out", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "denial-of-service" in out
    assert "…" not in out.split("* well-behaved Users only")[0]  # piped: no cell cut short
    assert "Jain" in out
    assert "Supplier S20 (culprit)" in out
    folder = tmp_path / "denial-of-service"
    for name in ("overview.png", "users.png", "latency.png"):
        data = (folder / name).read_bytes()
        assert data.startswith(PNG)
        assert len(data) > 30_000
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["scenario"] == "denial-of-service"
    assert summary["scale"] == 0.01
    assert summary["tm"]["over_capacity_windows"] == 0
    assert summary["tm"]["well_behaved_focus_share"] >= 0.99
    assert summary["fcfs"]["well_behaved_focus_share"] < 0.99
    assert len(summary["tm"]["users"]) == 50
    assert summary["policy"]["capacity"] == 1350
    table = (folder / "table.md").read_text()
    assert table.count("\n| Supplier") == 40  # every User listed


def test_a_scenario_of_your_own_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mine.py").write_text(
        "from srtm import TrafficPolicy\n"
        "from srtm.sim import Scenario, User, Stream, OpenLoop, burst, constant\n"
        "def tiny():\n"
        "    policy = TrafficPolicy(capacity=50, allocations={'a': 20, 'b': 10})\n"
        "    users = [User(id='a', demand=[Stream(constant(15))]),\n"
        "             User(id='b', client=OpenLoop(),\n"
        "                  demand=[Stream(burst(start=10, duration=10, rate=500))])]\n"
        "    return Scenario(name='tiny', policy=policy, users=users, duration=40,\n"
        "                    culprits=frozenset({'b'}))\n"
    )
    out = tmp_path / "out"
    assert run([f"{tmp_path / 'mine.py'}:tiny", "--no-progress", "--out", str(out)]) == 0
    assert "tiny" in capsys.readouterr().out
    summary = json.loads((out / "tiny" / "summary.json").read_text())
    assert summary["windows"] == 40
    assert summary["tm"]["well_behaved_focus_share"] == 1.0


def test_add_parser_plugs_into_a_command() -> None:
    parser = argparse.ArgumentParser(prog="srtm")
    subparsers = parser.add_subparsers(dest="command")
    add_parser(subparsers)
    args = parser.parse_args(["simulate", "dsp-outage", "--scale", "0.5", "--out", "x"])
    assert args.func is main
    assert args.scenarios == ["dsp-outage"]
    assert args.scale == 0.5


def test_python_dash_m_help_explains_scenarios_and_your_own() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "srtm.sim", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    for needle in ("built-in scenarios:", "your own scenario, in Python", *SCENARIOS):
        assert needle in done.stdout
