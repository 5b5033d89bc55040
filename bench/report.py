"""Render docs/benchmarks.md from one run's JSON: ``python -m bench.report``.

The page's prose lives in ``bench/benchmarks.md.in``; every figure on the page comes from
``bench/results/`` (``summary.json`` and each script's JSON, as ``python -m bench`` left
them), through these placeholders:

- ``{{machine}}``: the machine, its load when the run began, and the packages measured;
- ``{{targets}}``: every target a script reported, its measured figure, met or missed;
- ``{{tables:NAME}}``: every table script NAME printed, in order, under its title;
- ``{{seconds:NAME}}``: how long script NAME ran.

A placeholder the results cannot fill, or a printed table the page leaves out, is an
error: the page can neither quote a figure the run did not produce nor drop one it did.
Hand-written because no templating library is worth a dependency for four substitutions.

Usage: ``python -m bench.report [--results DIR] [--template FILE] [--out FILE] [--check]``;
``--check`` fails if the page on disk differs from what the results render.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "bench" / "benchmarks.md.in"
PAGE = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"
PUBLISHED = ROOT / "docs" / "figures" / "bench"  # the run the committed page quotes

_PLACEHOLDER = re.compile(r"\{\{([a-z]+)(?::([A-Za-z0-9_]+))?\}\}")


class ReportError(Exception):
    """The results cannot fill the template, or the template leaves results out."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table; columns after the first are right-aligned."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_text(summary: dict[str, Any]) -> str:
    """The machine, the load it was under, when, and the versions of what was measured."""
    info = summary["machine"]
    load = info.get("load")
    packages = ", ".join(f"{k} {v}" for k, v in info.get("packages", {}).items() if v != "absent")
    lines = [
        f"- **Machine**: {info['nproc']} CPUs ({info['cpu']}), "
        f"{info['implementation']} {info['python']}, {info['platform']}.",
    ]
    if load:
        lines.append(
            f"- **Load when the run began** (1, 5, 15 min averages): "
            f"{load[0]}, {load[1]}, {load[2]} on {info['nproc']} CPUs."
        )
    if summary.get("started"):
        lines.append(f"- **Run**: began {summary['started']}, took {summary_minutes(summary)}.")
    lines.append(f"- **Packages**: {packages}.")
    return "\n".join(lines)


def summary_minutes(summary: dict[str, Any]) -> str:
    total = sum(s["seconds"] for s in summary.get("scripts", {}).values())
    return f"{total / 60:.0f} min"


def targets_text(summary: dict[str, Any]) -> str:
    rows = []
    for row in summary["targets"]:
        where = row["script"] + (f" ({row['scenario']})" if "scenario" in row else "")
        rows.append(
            [where, str(row["target"]), str(row["measured"]), "met" if row["met"] else "**missed**"]
        )
    return markdown_table(["script", "target", "measured", ""], rows)


def tables_text(name: str, result: dict[str, Any]) -> str:
    tables = result.get("tables", [])
    if not tables:
        raise ReportError(f"{name}.json holds no tables")
    parts = []
    for t in tables:
        parts.append(f"**{t['title']}**\n\n" + markdown_table(t["header"], t["rows"]))
    return "\n\n".join(parts)


def render(template: str, results: Path) -> str:
    """The page: ``template`` with every placeholder filled from ``results``."""
    summary_path = results / "summary.json"
    if not summary_path.exists():
        raise ReportError(f"no {summary_path}: run `python -m bench` first")
    summary = json.loads(summary_path.read_text())
    scripts = summary.get("scripts", {})
    used: set[str] = set()

    def load(name: str | None) -> dict[str, Any]:
        if name is None or name not in scripts:
            raise ReportError(f"the run has no script {name!r} (it ran {', '.join(scripts)})")
        data: dict[str, Any] = json.loads((results / f"{name}.json").read_text())
        return data

    def fill(match: re.Match[str]) -> str:
        kind, arg = match.group(1), match.group(2)
        if kind == "machine":
            return machine_text(summary)
        if kind == "targets":
            return targets_text(summary)
        if kind == "tables":
            used.add(str(arg))
            return tables_text(str(arg), load(arg))
        if kind == "seconds":
            load(arg)
            return f"{scripts[arg]['seconds']:.0f} s"
        raise ReportError(f"unknown placeholder {match.group(0)}")

    page = _PLACEHOLDER.sub(fill, template)
    left_out = [n for n in scripts if load(n).get("tables") and n not in used]
    if left_out:
        raise ReportError(f"the template shows no tables of {', '.join(left_out)}")
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    parser.add_argument("--out", type=Path, default=PAGE)
    parser.add_argument("--check", action="store_true", help="fail if the page is not current")
    args = parser.parse_args(argv)
    try:
        page = render(args.template.read_text(), args.results)
    except ReportError as exc:
        print(f"bench.report: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != page:
            print(f"{args.out} is not what {args.results} renders", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(page)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
