"""Run every benchmark of docs/benchmarks.md: ``python bench/run.py`` (or ``python -m bench``).

Each script prints its figures and writes ``bench/results/<name>.json``; this runner
runs them one after the other (never together: they would share the CPUs) and writes
``bench/results/summary.json`` with every target and whether it was met.

``--quick`` runs each at a tiny size (what the smoke test does: the figures are noise);
``--only inprocess,roundtrips`` picks scripts; other options pass through (``--out``,
``--redis-url``); ``--sim-baseline PATH`` has bench/sim_day.py also time an earlier
source tree (a checkout of the commit to compare with).

A full run (every script, not ``--quick``, results in bench/results) then renders
docs/benchmarks.md from its results (bench/report.py) and copies the JSON the page
quotes to docs/figures/bench/, where the test of the page reads it.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    client_dispatch,
    inprocess,
    leases,
    multinode,
    report,
    roundtrips,
    sim_day,
    state,
    throughput,
)
from bench._common import RESULTS, base_parser, machine, write_json

SCRIPTS = {
    "inprocess": inprocess.main,
    "roundtrips": roundtrips.main,
    "leases": leases.main,
    "throughput": throughput.main,
    "multinode": multinode.main,
    "client_dispatch": client_dispatch.main,
    "state": state.main,
    "sim_day": sim_day.main,
}


def collect_targets(name: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target row a script reported, with the script's name."""
    rows: list[dict[str, Any]] = []
    for row in result.get("targets", []):
        rows.append({"script": name, **row})
    for scenario, figures in result.get("scenarios", {}).items():
        if isinstance(figures, dict):
            for row in figures.get("targets", []):
                rows.append({"script": name, "scenario": scenario, **row})
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--only", default=None, help="comma-separated scripts to run")
    parser.add_argument(
        "--sim-baseline", default=None, help="an earlier source tree for bench/sim_day.py"
    )
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(SCRIPTS)
    unknown = set(chosen) - set(SCRIPTS)
    if unknown:
        parser.error(f"unknown scripts: {', '.join(sorted(unknown))}")
    passthrough: list[str] = []
    if args.quick:
        passthrough.append("--quick")
    if args.out is not None:
        passthrough += ["--out", str(args.out)]
    if args.redis_url:
        passthrough += ["--redis-url", args.redis_url]
    summary: dict[str, Any] = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "scripts": {},
        "targets": [],
    }
    for name in chosen:
        print(f"\n######## {name}")
        began = time.perf_counter()
        extra = []
        if name == "sim_day" and args.sim_baseline:
            extra = ["--baseline", args.sim_baseline]
        result = SCRIPTS[name](passthrough + extra)
        summary["scripts"][name] = {"seconds": round(time.perf_counter() - began, 1)}
        summary["targets"] += collect_targets(name, result)
    print("\n######## targets")
    for row in summary["targets"]:
        where = row["script"] + (f" {row['scenario']}" if "scenario" in row else "")
        verdict = "met   " if row["met"] else "MISSED"
        print(f"   {verdict} [{where}] {row['target']}: {row['measured']}")
    write_json("summary", summary, args.out)
    if not args.quick and chosen == list(SCRIPTS) and args.out in (None, RESULTS):
        publish()
    return summary


def publish() -> None:
    """Render docs/benchmarks.md from bench/results and keep the JSON it quotes beside it."""
    folder = report.PUBLISHED
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in [*SCRIPTS, "summary"]:
        shutil.copy(RESULTS / f"{name}.json", folder / f"{name}.json")
    report.main(["--results", str(folder)])


if __name__ == "__main__":
    main()
