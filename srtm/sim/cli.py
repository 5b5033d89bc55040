"""``srtm simulate``: run scenarios on a virtual clock, with and without traffic management.

The ``srtm`` command wires this in with :func:`add_parser` and :func:`main`;
``python -m srtm.sim`` runs it on its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from typing import TYPE_CHECKING, Any

from srtm._errors import PolicyError, SrtmError
from srtm.sim._api import check_scale, load_scenario, prepare_output, run_scenario
from srtm.sim._builtin import SCENARIOS

if TYPE_CHECKING:
    from srtm.sim._scenario import Scenario

__all__ = ["DEFAULT_OUT", "add_parser", "build_parser", "main"]

#: In the current folder, as ``srtm demo`` writes ``./srtm-demo.png``; created if missing
#: (only the last folder of any --out is created: its parent must exist).
DEFAULT_OUT = "srtm-simulate"

DESCRIPTION = """\
Run traffic scenarios on a virtual clock through the gateway's own engine (the policy,
the fair share, the governor and the decision of srtm.Gate, exactly as the middleware
runs them), and side by side through a baseline without traffic management (first
come, first served up to capacity), in aggregate per control period. For each scenario
it prints a table and writes into OUT/<scenario>/: overview.png (offered and admitted
rates per User, capacity and threshold, traffic management on), users.png (each
User's guarantee delivered and fair share), latency.png (wait of the top-ups),
summary.json and table.md.
"""

EPILOG_HEAD = """\
scale:
  --scale compresses time: 0.1 runs a day in 8,640 windows (every curve and incident
  squeezed tenfold), with the same rates, so the capacity figures still hold.

your own scenario, in Python (then: srtm simulate my_scenarios.py:night):

  from srtm.sim import (Scenario, User, Client, OpenLoop, Stream, Priority, burst, daily,
                        outage, reference_policy, reference_users, at)

  def night() -> Scenario:
      users = [*reference_users(),
               User(id="90-B3-D5-1F-30-FF-00-01", name="Rogue", client=OpenLoop(),
                    demand=[Stream(burst(start=at("02:00"), duration=300, rate=8000),
                                   Priority.BULK)])]
      return Scenario(name="my-night", users=users,
                      policy=reference_policy(threshold=0.7),  # any TrafficPolicy
                      incidents=outage(start=at("03:00"), duration=600),
                      culprits=frozenset({"90-B3-D5-1F-30-FF-00-01"}))

  A User's demand is a list of Streams (a rate Curve and a priority class); curves add
  up (daily(volume) + burst(...)) and any function of a NumPy array of times can be one
  (srtm.sim.function). Client() queues SRs by class, urgent first, and honours
  Retry-After; OpenLoop() ignores refusals. See docs/simulate.md.

built-in scenarios:
"""


def _epilog() -> str:
    lines = [EPILOG_HEAD]
    for name, build in SCENARIOS.items():
        text = build().description
        lines.append(f"  {name}")
        lines += textwrap.wrap(text, width=84, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines) + "\n"


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help="built-in scenario names, or FILE.py:NAME / module:NAME (default: all built-in)",
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help="folder for the plots, summary.json and table.md; created if missing, but the "
        f"folder it is in must exist (default: ./{DEFAULT_OUT})",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        metavar="S",
        help="time compression, in (0, 10]: 1 is a full day of 86,400 windows (default 1)",
    )
    parser.add_argument("--list", action="store_true", help="list the built-in scenarios and stop")
    parser.add_argument("--all-users", action="store_true", help="list every User in the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--exact",
        action="store_true",
        help="send every request through Gate.decide, even those proved admitted (slower, "
        "same results)",
    )
    policy = parser.add_argument_group("policy overrides (every scenario)")
    policy.add_argument("--capacity", type=float, metavar="SR/s", help="the pool's capacity")
    policy.add_argument("--threshold", type=float, metavar="T", help="operating threshold, (0, 1]")
    policy.add_argument(
        "--control-period",
        type=float,
        metavar="SECONDS",
        help="how often the governor recomputes, in seconds (the built-in scenarios: 1; "
        "the core's default: 0.25, four times the recomputations)",
    )
    policy.add_argument("--seed", type=int, help="seed of the random arrivals")
    parser.set_defaults(func=main)
    return parser


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``simulate`` to an ``argparse`` sub-command set (``srtm simulate``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="run traffic scenarios with and without traffic management, with plots",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return _configure(parser)


def build_parser(prog: str = "python -m srtm.sim") -> argparse.ArgumentParser:
    """A stand-alone parser (``python -m srtm.sim``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return _configure(parser)


def _override(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    changes: dict[str, Any] = {}
    if args.capacity is not None:
        changes["capacity"] = args.capacity
    if args.threshold is not None:
        changes["threshold"] = args.threshold
    if args.control_period is not None:
        changes["control_period"] = args.control_period
    if changes:
        # Capacity changes in the scenario that restore "the policy's" follow the override.
        scenario = dataclasses.replace(
            scenario, policy=dataclasses.replace(scenario.policy, **changes)
        )
    if args.seed is not None:
        scenario = dataclasses.replace(scenario, seed=args.seed)
    return scenario


def main(args: argparse.Namespace) -> int:
    """Run ``srtm simulate`` with parsed arguments; return the exit status."""
    from rich.console import Console

    console = Console()
    if args.list:
        for name, build in SCENARIOS.items():
            console.print(f"[bold]{name}[/bold]: {build().description}")
        return 0
    try:
        check_scale(args.scale)
        names = args.scenarios or list(SCENARIOS)
        scenarios = [_override(load_scenario(name), args) for name in names]
        out = prepare_output(args.out)
    except PolicyError as exc:
        print(f"srtm simulate: bad policy: {exc}", file=sys.stderr)
        return 2
    except SrtmError as exc:
        print(f"srtm simulate: {exc}", file=sys.stderr)
        return 2
    for scenario in scenarios:
        try:
            result = run_scenario(
                scenario,
                scale=args.scale,
                out=out,
                progress=not args.no_progress,
                exact=args.exact,
                console=console,
            )
        except SrtmError as exc:
            print(f"srtm simulate: {scenario.name}: {exc}", file=sys.stderr)
            return 2
        result.print(console, all_users=args.all_users)
        console.print()
    return 0


def run(argv: list[str] | None = None) -> int:
    """``python -m srtm.sim``'s entry point."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return main(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
