"""The ``srtm`` command: ``srtm demo`` (a live gateway under attack) and ``srtm simulate``.

``srtm demo`` needs nothing but the package: no Redis, no network beyond loopback.
``srtm simulate`` comes from :mod:`srtm.sim.cli` (``add_parser(subparsers)`` and
``main(args)``); when that module is not there, ``simulate`` says so clearly.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import srtm
from srtm import _ops_cli

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

__all__ = ["build_parser", "main"]

_DESCRIPTION = """\
Service Request Traffic Management: share a message gateway's back-end capacity fairly
across Service Users, and send Service Requests so that urgent ones go first.
"""

_DEMO_DESCRIPTION = """\
Run a real gateway and {n} Suppliers on this machine, and make one of them run amok.

The gateway is a small back-end app behind srtm.middleware.ASGITrafficManager
(embedded memory:// storage), served by uvicorn on 127.0.0.1. Its policy: capacity
{capacity:.0f} SR/s, threshold {threshold:g}, so traffic management engages at {budget:.0f} SR/s.
The Suppliers' allocations ({allocations} SR/s) add up to {allocated:.0f}.
Each Supplier sends prepayment top-ups (2.2), price updates (1.2.1) and bulk reads
(4.8.1) through srtm.client.AsyncServiceRequestClient, within its allocation: {sent:.0f}
SR/s together, so traffic management stays off. From {amok_from:.0%} to {amok_to:.0%} of the run,
Supplier {runaway}'s back end breaks: a separate process floods bulk reads on {connections}
connections as fast as they go, bypassing its client (no pacing, no Retry-After).

The terminal shows, per User, what it offered and had admitted in the last
window, its refusals (429/503), its limit while traffic management is on, the SRs
waiting in its client, and how long top-ups take. At the end, a verdict computed
from the measurements:

  - each well-behaved User had at least {min_share:.0%} of its requests admitted, and
    every one of their SRs was answered;
  - their top-ups during the flood were all admitted at the first attempt: none was
    refused or made to wait out a Retry-After (how long they took is reported too;
    that also depends on how busy this machine is);
  - {runaway} really flooded (1.5x its fair share or more), and was held to its fair
    share computed from the measured demand (at most {slack:g}x of it, plus one request
    per window: the gate decides on estimates a fraction of a window old);
  - traffic management was off before the flood, on during it, and off again
    before the run ended;
  - no window admitted more than capacity.

It writes a PNG of the run (offered and admitted per User per second, traffic
management on/off, capacity and threshold, top-up latency) and, with --json, a
machine-readable summary. Exit status: 0 when the verdict passes, 1 when it fails
or the demo could not run, 2 for bad arguments.
"""


def _demo_description() -> str:
    try:
        from srtm.demo._config import DemoConfig
    except ImportError:  # the demo extra is not installed; `srtm demo` will say so
        return "Run a live gateway and clients (needs: pip install 'srtm[demo]')."

    cfg = DemoConfig()
    return _DEMO_DESCRIPTION.format(
        n=len(cfg.suppliers),
        capacity=cfg.capacity,
        threshold=cfg.threshold,
        budget=cfg.budget,
        allocations=", ".join(f"{s.label} {s.allocation:g}" for s in cfg.suppliers),
        allocated=sum(s.allocation for s in cfg.suppliers),
        sent=sum(s.rate for s in cfg.suppliers),
        amok_from=cfg.amok_from,
        amok_to=cfg.amok_to,
        runaway=cfg.runaway.label,
        connections=cfg.flood_connections,
        min_share=cfg.min_share,
        slack=cfg.fair_share_slack,
    )


#: The incident (30% to 70% of the run) must cover three whole windows of 1 s, and the
#: last 30% must leave traffic management time to release: with the default policy it
#: went off 4.3 s after the flood in the 30 s reference run and 5.1 s after it in a 20 s
#: run on a busy machine (the demand estimate falls by 75% of the gap a second, then
#: ``release_after`` = 8 periods of 0.25 s), so 25 s, which leaves 7.5 s.
_MIN_DURATION = 25.0


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and _MIN_DURATION <= value <= 3600):
        raise argparse.ArgumentTypeError(
            f"must be between {_MIN_DURATION:.0f} and 3600 seconds, got {text}"
        )
    return value


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _writable(path: Path, what: str, suffix: str) -> str | None:
    """Why ``path`` cannot be written (before a 30 s run rather than after), or None."""
    if path.suffix.lower() != suffix:
        return f"{what}: must end in {suffix}, got {str(path)!r}"
    if path.is_dir():
        return f"{what}: {str(path)!r} is a directory"
    parent = path.parent
    if not parent.is_dir():
        return f"{what}: the folder {str(parent)!r} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{what}: cannot write to {str(path)!r}"
    return None


def _add_demo(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="watch a real gateway hold while one Supplier runs amok",
        description=_demo_description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--duration",
        type=_duration,
        default=30.0,
        metavar="SECONDS",
        help=f"how long the run lasts, {_MIN_DURATION:.0f} to 3600 (default: 30)",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("srtm-demo.png"),
        metavar="PATH",
        help="where to write the plot, a .png (default: ./srtm-demo.png)",
    )
    demo.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write a summary (figures, checks, per-window counts) as JSON",
    )
    demo.add_argument(
        "--no-live",
        action="store_true",
        help="print one plain line per second instead of the live table "
        "(automatic when standard output is not a terminal)",
    )
    demo.add_argument(
        "--seed",
        type=_seed,
        default=1,
        help="seed of the Suppliers' arrivals and mixes (default: 1)",
    )


def _sim_cli() -> ModuleType | None:
    """``srtm.sim.cli`` if it is installed; None if it is not there (a bug in it is raised)."""
    try:
        return importlib.import_module("srtm.sim.cli")
    except ModuleNotFoundError as exc:
        # srtm.sim left out of a build, or its extra (numpy, matplotlib, rich) not installed:
        # `srtm simulate` then says which. A bug inside srtm itself is raised.
        if exc.name in {"srtm.sim", "srtm.sim.cli"} or not (exc.name or "srtm").startswith("srtm"):
            return None
        raise


def build_parser() -> tuple[argparse.ArgumentParser, ModuleType | None]:
    """The ``srtm`` argument parser, and the simulator's CLI module if there is one."""
    parser = argparse.ArgumentParser(
        prog="srtm",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'srtm COMMAND --help' for what a command does and its options.",
    )
    parser.add_argument("--version", action="version", version=f"srtm {srtm.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo(subparsers)
    _ops_cli.add_parsers(subparsers)
    sim = _sim_cli()
    if sim is not None:
        sim.add_parser(subparsers)
    else:
        unavailable = subparsers.add_parser(
            "simulate",
            help="run incident scenarios on a virtual clock (not available in this build)",
            description="simulate is not available in this build (srtm.sim.cli is missing).",
        )
        unavailable.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser, sim


def _missing_extra(command: str, *modules: str) -> bool:
    """Say which extra to install when ``command`` cannot run here; True if one is missing."""
    from srtm._extras import MissingExtraError, require

    try:
        require(f"srtm {command}", "demo", *modules)
    except MissingExtraError as exc:
        print(f"srtm {command}: error: {exc}", file=sys.stderr)
        return True
    return False


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if _missing_extra("demo", "uvicorn", "rich", "matplotlib"):
        return 2
    from rich.console import Console

    from srtm.demo import DemoConfig, DemoConfigError, run_demo

    demo_parser = _subparser(parser, "demo")
    for path, what, suffix in ((args.out, "--out", ".png"), (args.json, "--json", ".json")):
        problem = path is not None and _writable(path, what, suffix)
        if problem:
            demo_parser.error(problem)
    try:
        config = DemoConfig(duration=args.duration, seed=args.seed)
    except DemoConfigError as exc:
        demo_parser.error(str(exc))
    console = Console()
    live = console.is_terminal and not args.no_live
    try:
        report = run_demo(config, out=args.out, json_path=args.json, live=live, console=console)
    except KeyboardInterrupt:
        print("srtm demo: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as exc:
        print(f"srtm demo: error: {exc}", file=sys.stderr)
        return 1
    return 0 if report.passed else 1


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:  # argparse keeps its subparsers here, and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            found = action.choices.get(name)
            if isinstance(found, argparse.ArgumentParser):
                return found
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``srtm`` command with ``argv`` (default: the process's); returns the exit status."""
    parser, sim = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse would report these with the top-level usage; the command's own usage
        # is the one that helps (``srtm simulate --bogus`` shows simulate's options).
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command in _ops_cli.COMMANDS:
        return _ops_cli.run(args)
    if args.command == "demo":
        return _demo(parser, args)
    if args.command == "simulate":
        if _missing_extra("simulate", "numpy", "matplotlib", "rich"):
            return 2
        if sim is None:
            print(
                "srtm simulate: error: simulate is not available in this build "
                "(the module srtm.sim.cli is missing)",
                file=sys.stderr,
            )
            return 2
        status = sim.main(args)
        return int(status) if status is not None else 0
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover - argparse checks it
    return 2  # pragma: no cover
