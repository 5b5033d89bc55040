"""docs/simulate.md's scenario file runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from srtm.sim import load_scenario, run_scenario

DOC = Path(__file__).resolve().parents[2] / "docs" / "simulate.md"


def test_the_documented_scenario_file_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), re.MULTILINE | re.DOTALL)
    (source,) = [b for b in blocks if b.startswith("# my_scenarios.py\n")]
    path = tmp_path / "my_scenarios.py"
    path.write_text(source)
    for name, expected in (("night", "my-night"), ("two_suppliers", "two-suppliers")):
        scenario = load_scenario(f"{path}:{name}")
        assert scenario.name == expected
        result = run_scenario(scenario, scale=0.01, progress=False)
        assert result.tm_figures.over_capacity_windows == 0
