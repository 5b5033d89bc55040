"""``python -m srtm.sim``: the same as ``srtm simulate``."""

import sys

from srtm.sim.cli import run

sys.exit(run())
