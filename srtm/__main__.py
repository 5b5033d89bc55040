"""``python -m srtm``: the same as the ``srtm`` command."""

from srtm.cli import main

raise SystemExit(main())
