"""docs/benchmarks.md is rendered from one run's results, and can quote nothing else."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest

from bench import report
from bench.run import SCRIPTS

if TYPE_CHECKING:
    from pathlib import Path


def results(tmp_path: Path, **scripts: dict[str, Any]) -> Path:
    summary = {
        "machine": {
            "nproc": 2,
            "cpu": "Test CPU",
            "implementation": "CPython",
            "python": "3.11.7",
            "platform": "Linux",
            "load": [1.5, 1.25, 1.0],
            "packages": {"limits": "5.8.0", "slowapi": "absent"},
        },
        "started": "2026-12-05 14:00 UTC",
        "scripts": {name: {"seconds": 61.0} for name in scripts},
        "targets": [
            {"script": "a", "target": "x <= 1.5", "measured": "1.23", "met": True},
            {"script": "a", "scenario": "s", "target": "y >= 0.9", "measured": "0.7", "met": False},
        ],
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    for name, data in scripts.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    return tmp_path


TABLE = {"tables": [{"title": "cost", "header": ["variant", "us"], "rows": [["bare", "1.5"]]}]}


def test_fills_every_placeholder_from_the_results(tmp_path: Path) -> None:
    folder = results(tmp_path, a=TABLE)
    page = report.render("{{machine}}\n{{targets}}\n{{tables:a}} in {{seconds:a}}", folder)
    assert "{{" not in page
    assert "2 CPUs (Test CPU)" in page
    assert "1.5, 1.25, 1.0 on 2 CPUs" in page
    assert "limits 5.8.0" in page
    assert "slowapi" not in page
    assert "| a | x <= 1.5 | 1.23 | met |" in page
    assert "| a (s) | y >= 0.9 | 0.7 | **missed** |" in page
    assert "**cost**\n\n| variant | us |\n|---|---:|\n| bare | 1.5 |" in page
    assert page.endswith("in 61 s")


def test_a_table_the_page_leaves_out_is_an_error(tmp_path: Path) -> None:
    folder = results(tmp_path, a=TABLE, b=TABLE)
    with pytest.raises(report.ReportError, match="no tables of b"):
        report.render("{{tables:a}}", folder)


@pytest.mark.parametrize(
    ("template", "message"),
    [("{{tables:zz}}", "no script 'zz'"), ("{{figure}}", "unknown placeholder")],
)
def test_a_placeholder_the_run_cannot_fill_is_an_error(
    tmp_path: Path, template: str, message: str
) -> None:
    with pytest.raises(report.ReportError, match=message):
        report.render(template, results(tmp_path, a=TABLE))


def test_the_template_shows_every_script_of_a_full_run() -> None:
    named = set(re.findall(r"\{\{tables:([A-Za-z0-9_]+)\}\}", report.TEMPLATE.read_text()))
    assert named == set(SCRIPTS)


def test_the_page_is_what_the_published_results_render() -> None:
    # The JSON of the run the page quotes is committed beside it: a figure edited by hand,
    # or a template changed without re-rendering, fails here.
    expected = report.render(report.TEMPLATE.read_text(), report.PUBLISHED)
    assert report.PAGE.read_text() == expected


CLIENT_ROWS = {
    ("`ServiceRequestClient` (threads)", "httpx"): "sync",
    ("`AsyncServiceRequestClient`", "httpx"): "async",
    ("`ServiceRequestClient` (threads)", "aiohttp"): "sync aiohttp",
    ("`AsyncServiceRequestClient`", "aiohttp"): "async aiohttp",
}


def test_the_client_pages_dispatch_table_is_the_published_run() -> None:
    # docs/client.md quotes the dispatch figures of the same run as docs/benchmarks.md:
    # a rerun of the benchmark without updating the client page fails here.
    page = (report.PAGE.parent / "client.md").read_text()
    section = page.split("## Measured: dispatch rate", 1)[1].split("\n## ", 1)[0]
    dispatch = json.loads((report.PUBLISHED / "client_dispatch.json").read_text())["dispatch"]
    quoted = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if tuple(cells[:2]) in CLIENT_ROWS:
            quoted[CLIENT_ROWS[cells[0], cells[1]]] = cells[2:6]
    assert set(quoted) == set(CLIENT_ROWS.values())
    for kind, cells in quoted.items():
        figures = dispatch[kind]
        assert cells == [
            f"{figures['settled_per_s']:,}",
            f"{figures['raw_per_s']:,}",
            f"{figures['ratio_to_raw']:.2f}",
            f"{figures['submit_us']:.1f} µs",
        ], kind
