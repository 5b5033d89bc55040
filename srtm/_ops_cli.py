"""``srtm inspect`` and ``srtm set-capacity``: an operator's view of, and hand on, a shared store.

:func:`add_parsers` adds both subcommands to the ``srtm`` command's subparsers and
:func:`run` runs one of them (exit status 0, 1 when the store cannot be read or
written, 2 for bad arguments). The logic is :mod:`srtm._inspect`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING, Any

from srtm._errors import SrtmError

if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["COMMANDS", "add_parsers", "run"]

COMMANDS = ("inspect", "set-capacity")


def _capacity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (0 <= value < math.inf):
        raise argparse.ArgumentTypeError(f"capacity must be a finite number >= 0, got {text!r}")
    return value


def add_parsers(subparsers: Any) -> None:
    """Add ``inspect`` and ``set-capacity`` to an ``argparse`` subparsers object."""
    inspect = subparsers.add_parser(
        "inspect",
        help="show what every node of a shared store published and counted",
        description=(
            "Read a shared Redis store and show, per pool: the capacity and shadow mode "
            "published through the control plane (none: the nodes use their policy's), "
            "the live nodes, and per User the requests offered and admitted in the "
            "current and the previous window, summed over all nodes."
        ),
    )
    inspect.add_argument("uri", help="the store's limits URI, e.g. redis://gw-redis:6379")
    inspect.add_argument("--pool", help="only this pool (default: every pool in the store)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    setter = subparsers.add_parser(
        "set-capacity",
        help="set a pool's capacity on every node sharing a store",
        description=(
            "Publish a pool's capacity (SR/s) through a shared Redis store: every running "
            "node applies it within one control period, and nodes started later take it "
            "up. 0 is an outage: everything is refused with 503."
        ),
    )
    setter.add_argument("uri", help="the store's limits URI, e.g. redis://gw-redis:6379")
    setter.add_argument("value", type=_capacity, help="the new capacity, SR/s")
    setter.add_argument("--pool", help="the pool (default: the store's only pool)")


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run ``args.command`` (one of :data:`COMMANDS`); the exit status."""
    from srtm._inspect import inspect_store, publish

    out = sys.stdout if out is None else out
    command = args.command
    try:
        if command == "inspect":
            report = inspect_store(args.uri, args.pool)
            if args.json:
                out.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
            else:
                _print(report, out)
            return 0
        if command == "set-capacity":
            pool, rev = publish(args.uri, capacity=args.value, pool=args.pool)
            out.write(f"pool {pool!r}: capacity {args.value:g} SR/s published (revision {rev})\n")
            return 0
    except ValueError as exc:
        print(f"srtm {command}: error: {exc}", file=sys.stderr)
        return 2
    except (SrtmError, OSError) as exc:
        print(f"srtm {command}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # redis-py's errors: the store could not be reached
        print(f"srtm {command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"srtm: unknown command {command!r}", file=sys.stderr)
    return 2


def _rows(pool: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    current, previous = pool["windows"]["current"], pool["windows"]["previous"]
    rows = []
    for user in sorted(current.keys() | previous.keys()):
        now = current.get(user, {"offered": 0, "admitted": 0})
        before = previous.get(user, {"offered": 0, "admitted": 0})
        rows.append(
            (
                user,
                str(before["offered"]),
                str(before["admitted"]),
                str(now["offered"]),
                str(now["admitted"]),
            )
        )
    return rows


def _heading(name: str, pool: dict[str, Any]) -> str:
    capacity = "policy's" if pool["capacity"] is None else f"{pool['capacity']:g} SR/s"
    shadow = "policy's" if pool["shadow"] is None else ("on" if pool["shadow"] else "off")
    lapsed = f", {len(pool['lapsed_nodes'])} lapsed" if pool["lapsed_nodes"] else ""
    return (
        f"pool {name}: capacity {capacity}, shadow {shadow}, window {pool['window']:g} s, "
        f"{len(pool['nodes'])} live node(s){lapsed}"
    )


_COLUMNS = ("user", "prev offered", "prev admitted", "offered", "admitted")


def _print(report: dict[str, Any], out: TextIO) -> None:
    """A rich table per pool when writing to a terminal and rich is there; else plain text."""
    pools = report["pools"]
    if not pools:
        out.write("no srtm pool in this store yet\n")
        return
    if out.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            console = Console(file=out)
            for name, pool in pools.items():
                table = Table(*_COLUMNS, title=_heading(name, pool))
                for row in _rows(pool):
                    table.add_row(*row)
                console.print(table)
            return
    for name, pool in pools.items():
        out.write(_heading(name, pool) + "\n")
        rows = [_COLUMNS, *_rows(pool)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        for row in rows:
            out.write("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) + "\n")
        if pool["nodes"]:
            out.write("live nodes: " + ", ".join(pool["nodes"]) + "\n")
