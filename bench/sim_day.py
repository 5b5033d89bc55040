"""A simulated day of every built-in scenario: how long ``srtm simulate`` takes.

Each round runs each scenario (``srtm.sim.run_scenario``, a full day at scale 1, both
engines and the figures, no plots) in a fresh subprocess and records the CPU time and the
wall time of the run, and a fingerprint of its results (every per-window array and the
summary, timings left out). Figures are medians over rounds; CPU time is the one to
read on a shared machine, where wall time also counts the other processes.

``--baseline PATH`` also runs another source tree of srtm (a checkout of an earlier
commit) in alternate subprocesses, round by round, and reports each scenario's speed-up
against it (target: at least 25% less time a day) and whether the results are the same.

Usage: ``python bench/sim_day.py [--quick] [--rounds N] [--baseline PATH]
[--control-period SECONDS] [SCENARIO ...]``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, base_parser, header, machine, table, write_json

#: Share of a day's CPU time the change must save against the baseline.
TARGET_SAVING = 0.25

# Run in the child, whose srtm comes from PYTHONPATH alone (this file's folder is not on
# its path, so `bench._common` cannot put the current tree first).
_CHILD = """
import hashlib, json, sys, time
import numpy as np
from srtm.sim import load_scenario, run_scenario

name, scale, period = sys.argv[1], float(sys.argv[2]), sys.argv[3]
scenario = load_scenario(name)
if period:  # --control-period: the scenario's policy recomputing that often
    import dataclasses
    policy = dataclasses.replace(scenario.policy, control_period=float(period))
    scenario = dataclasses.replace(scenario, policy=policy)
wall, cpu = time.perf_counter(), time.process_time()
result = run_scenario(scenario, scale=scale, progress=False)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
digest = hashlib.sha256()
for run in (result.tm, result.fcfs):
    for field in ("demand", "offered", "admitted", "capacity", "active", "backlog",
                  "refused_user", "refused_capacity", "lost", "queued", "priority_admitted",
                  "priority_wait_max", "latency_count", "latency_sum", "latency_max",
                  "class_count", "class_wait"):
        digest.update(np.ascontiguousarray(getattr(run, field)).tobytes())
    digest.update(repr(sorted(run.latency_hist.items())).encode())
    digest.update(repr(run.drains).encode())

def untimed(value):
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in ("wall", "timing")}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value

digest.update(json.dumps(untimed(result.summary()), sort_keys=True, default=str).encode())
print(json.dumps({"cpu_s": cpu, "wall_s": wall, "fingerprint": digest.hexdigest()[:16],
                  "srtm": __import__("srtm").__file__}))
"""


def scenario_names() -> list[str]:
    """The built-in scenarios, in the order ``srtm simulate --list`` gives them."""
    from srtm.sim import SCENARIOS

    return list(SCENARIOS)


def run_day(tree: Path, name: str, scale: float, period: float | None = None) -> dict[str, Any]:
    """One scenario's run in a fresh interpreter importing srtm from ``tree`` (its policy
    recomputing every ``period`` seconds when given)."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory(prefix="srtm-sim-day-") as cwd:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _CHILD,
                name,
                repr(scale),
                "" if period is None else repr(period),
            ],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"{name} failed under {tree}:\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(figures["srtm"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the child imported srtm from {figures['srtm']}, not from {tree}")
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("scenarios", nargs="*", help="built-in scenarios (default: all)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3; quick 1)")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another srtm source tree to compare with"
    )
    parser.add_argument(
        "--control-period",
        type=float,
        default=None,
        metavar="SECONDS",
        help="every scenario's policy recomputing this often (default: each scenario's own)",
    )
    args = parser.parse_args(argv)
    names = args.scenarios or scenario_names()
    unknown = set(names) - set(scenario_names())
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.baseline is not None and not (args.baseline / "srtm" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: no srtm package there")
    scale = 0.02 if args.quick else 1.0
    rounds = args.rounds or (1 if args.quick else 3)
    trees = {"current": ROOT}
    if args.baseline is not None:
        trees = {"baseline": args.baseline, "current": ROOT}
    info = machine()
    header(f"a simulated day of each scenario (scale {scale:g}, {rounds} rounds)", info)
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {label: [] for label in trees} for name in names
    }
    for r in range(rounds):
        # Alternate which tree goes first, so neither always runs on a warmer machine.
        order = list(trees) if r % 2 == 0 else list(reversed(trees))
        for name in names:
            for label in order:
                samples[name][label].append(run_day(trees[label], name, scale, args.control_period))
    result: dict[str, Any] = {
        "machine": info,
        "scale": scale,
        "rounds": rounds,
        "baseline": None if args.baseline is None else str(args.baseline),
        "control_period": args.control_period,
        "scenarios": {},
    }
    rows = []
    for name in names:
        entry: dict[str, Any] = {}
        for label, runs in samples[name].items():
            cpu = [s["cpu_s"] for s in runs]
            wall = [s["wall_s"] for s in runs]
            entry[label] = {
                "cpu_s": cpu,
                "wall_s": wall,
                "cpu_median_s": statistics.median(cpu),
                "wall_median_s": statistics.median(wall),
                "fingerprints": sorted({s["fingerprint"] for s in runs}),
            }
        now = entry["current"]
        row: list[object] = [name, f"{now['cpu_median_s']:.2f}", f"{now['wall_median_s']:.2f}"]
        if "baseline" in entry:
            base = entry["baseline"]
            # Per-round ratios, then their median: a busy moment slows both sides alike.
            ratios = [c / b for c, b in zip(now["cpu_s"], base["cpu_s"], strict=True)]
            saving = 1.0 - statistics.median(ratios)
            same = base["fingerprints"] == now["fingerprints"] and len(now["fingerprints"]) == 1
            entry["cpu_saving"] = saving
            entry["cpu_saving_rounds"] = [1.0 - x for x in ratios]
            entry["same_results"] = same
            entry["targets"] = [
                {
                    "target": f"a simulated day at least {TARGET_SAVING:.0%} faster (CPU)",
                    "measured": f"{saving:.1%} faster: {base['cpu_median_s']:.2f} s -> "
                    f"{now['cpu_median_s']:.2f} s (median of {rounds} rounds)",
                    "met": saving >= TARGET_SAVING,
                },
                {
                    "target": "the same results as the baseline",
                    "measured": "identical" if same else "DIFFERENT",
                    "met": same,
                },
            ]
            row += [f"{base['cpu_median_s']:.2f}", f"{saving:.1%}", "yes" if same else "NO"]
        result["scenarios"][name] = entry
        rows.append(row)
    head = ["scenario", "cpu s", "wall s"]
    if args.baseline is not None:
        head += ["baseline cpu s", "saving", "same results"]
    print(table(rows, head, title="a simulated day at scale 1 (medians of rounds)"))
    print(f"   wrote {write_json('sim_day', result, args.out)}")
    return result


if __name__ == "__main__":
    main()
