"""Priority classes of the simulated clients: srtm.client's own, or the same order here.

The default order is the domain brief's: prepayment work first, then customer-facing
work, installation, routine changes, and bulk reads last; lower numbers are more urgent
and any int is a class. When :mod:`srtm.client` exports its ``Priority`` with these
members the simulator uses that very enum, so a scenario can be written with either.
"""

from __future__ import annotations

import enum
import importlib
import logging
from typing import cast

__all__ = ["Priority", "class_name"]

log: logging.Logger = logging.getLogger("srtm.sim")


class _Priority(enum.IntEnum):
    """The default priority classes, most urgent first (as in srtm.client)."""

    PREPAYMENT = 0
    CUSTOMER = 1
    INSTALLATION = 2
    ROUTINE = 3
    BULK = 4


def _client_priority() -> type[_Priority] | None:
    """srtm.client's Priority if it can be imported and has exactly our members."""
    try:
        found = importlib.import_module("srtm.client").Priority
    except Exception:  # not written yet, or broken mid-edit: the local twin will do
        return None
    ours = {m.name: m.value for m in _Priority}
    try:
        theirs = {m.name: int(m.value) for m in found}
    except TypeError:
        return None
    if theirs != ours:
        log.warning("srtm.client.Priority differs from the simulator's classes; using the latter")
        return None
    return cast("type[_Priority]", found)


Priority: type[_Priority] = _client_priority() or _Priority


def class_name(cls: int) -> str:
    """``"prepayment"`` for 0 and so on; other classes as ``"class 7"``."""
    try:
        return _Priority(cls).name.lower()
    except ValueError:
        return f"class {cls}"
