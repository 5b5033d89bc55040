"""Starting the demo's helper processes with this very ``srtm`` on their path."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["child_env"]


def child_env() -> dict[str, str]:
    """The environment for ``python -m srtm.demo...``: ours, with this tree's ``srtm`` first."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
