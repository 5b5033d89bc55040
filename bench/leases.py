"""Leases: the round trips they save against the accuracy they cost, on one Redis.

Several gates (nodes) share one private redis-server and decide on one virtual clock,
so every configuration sees exactly the same requests. 50 Users, allocations an equal share of
the budget (threshold 0.8), offered for ``--seconds`` seconds, spread round-robin over
the nodes, in two scenarios:

* ``held``: a pool of 2,000 SR/s (budget 1,600): 25 flooders at 200 SR/s each and 15
  brisk Users at 100 SR/s (over their fair share: held), 10 quiet Users at 5 SR/s;
* ``busy``: a pool of 20,000 SR/s (budget 16,000) at 99% of its budget: 40 Users at
  396 SR/s, 10 at 5 SR/s; traffic management stays off, nobody is held, every fast
  User leases, and a block unspent at a window's end is capacity nobody got: the
  worst case for leases.

For leases off (one round trip per admitted request: the exact reference) and a sweep
of lease sizes and horizons, it reports round trips per decision (from the server's
``INFO commandstats``, recomputations included), and the accuracy:

* ``unspent``: admissions the store granted that no node used before the window ended
  (under-admission), per window, as a share of the budget, mean and worst;
* ``over cap``: windows whose admitted total passed the hard cap (must be none), and
  the most any User was admitted in a window above its quota (must be 0);
* ``vs exact``: each User's admitted total against the leases-off run (sum of absolute
  differences over the sum admitted), and the quiet Users' share admitted.

Usage: ``python bench/leases.py [--quick] [--nodes N] [--seconds S]``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _apps
from bench._common import (
    base_parser,
    flush_redis,
    header,
    machine,
    private_redis,
    table,
    write_json,
)
from bench.roundtrips import CommandCount, round_trips
from srtm import Gate, Identity, TrafficPolicy
from srtm.lease import LeasePolicy
from srtm.ledger import redis_keys

THRESHOLD = 0.8
#: Scenarios: (capacity SR/s, groups of (name, Users, SR/s each)).
SCENARIOS: dict[str, tuple[float, tuple[tuple[str, int, float], ...]]] = {
    # TM active: flooders and brisk Users held to their fair share, quiet ones untouched.
    "held": (2000.0, (("flooder", 25, 200.0), ("brisk", 15, 100.0), ("quiet", 10, 5.0))),
    # TM inactive, the pool at 99% of its budget: nobody is held, everybody leases, and a
    # block left unspent at a window's end is capacity nobody got.
    "busy": (20_000.0, (("brisk", 40, 396.0), ("quiet", 10, 5.0))),
}
SLICES = 200  # slices of a window in which requests are offered
START = 1_700_000_000


def population(scenario: str) -> list[tuple[str, str, float]]:
    """(User, group, SR/s) for every User."""
    groups = SCENARIOS[scenario][1]
    names = iter(_apps.users(sum(n for _, n, _ in groups)))
    return [(next(names), group, rate) for group, n, rate in groups for _ in range(n)]


def simulate(
    url: str, scenario: str, nodes: int, lease: LeasePolicy | None, seconds: int
) -> dict[str, Any]:
    """Offer the population to ``nodes`` gates on one Redis; counts per window and User."""
    flush_redis(url)
    people = population(scenario)
    capacity = SCENARIOS[scenario][0]
    policy = TrafficPolicy(
        capacity=capacity,
        threshold=THRESHOLD,
        allocations={u: capacity * THRESHOLD / len(people) for u, _, _ in people},
        storage=url,
        nodes=nodes,
        lease=lease,
    )
    gates = [Gate(policy, background=False) for _ in range(nodes)]
    ids = {u: Identity(u, "4.1") for u, _, _ in people}
    period_slices = max(1, round(SLICES * (policy.control_period or 1.0) / policy.window))
    admitted: defaultdict[int, Counter[str]] = defaultdict(Counter)
    owed: Counter[str] = Counter()
    granted: dict[int, dict[str, int]] = {}
    count = CommandCount(url)
    decisions = 0
    spent = 0.0  # seconds inside gate.decide
    k = 0
    for second in range(seconds):
        window = START + second
        for s in range(SLICES):
            now = window + (s + 0.5) / SLICES
            if s % period_slices == 0:
                for gate in gates:
                    gate.tick(now=window + s / SLICES)
            order = people if s % 2 == 0 else people[::-1]
            for user, _, rate in order:
                owed[user] += rate
                while owed[user] >= SLICES:
                    owed[user] -= SLICES
                    gate = gates[k % nodes]
                    k += 1
                    began = time.perf_counter()
                    d = gate.decide(ids[user], now=now)
                    spent += time.perf_counter() - began
                    admitted[window][user] += d.admitted
                    decisions += 1
        # Read the store's counts as the window ends: its keys expire on real time.
        granted.update(store_counts(url, [window]))
    commands = count.delta()
    count.close()
    for gate in gates:
        gate.close()
    return {
        "scenario": scenario,
        "decisions": decisions,
        "round_trips": round_trips(commands),
        "us_per_decision": round(spent / max(1, decisions) * 1e6, 2),
        "admitted": admitted,
        "granted": granted,
    }


def store_counts(url: str, windows: list[int]) -> dict[int, dict[str, int]]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        out = {}
        for w in windows:
            raw = client.hgetall(redis_keys("default", w)[1])
            out[w] = {k.decode(): int(v) for k, v in raw.items()}
        return out
    finally:
        client.close()


def accuracy(run: dict[str, Any], exact: dict[str, Any] | None) -> dict[str, Any]:
    """Unspent leases, cap and quota checks, and the distance from the exact run."""
    capacity = SCENARIOS[run["scenario"]][0]
    budget = capacity * THRESHOLD
    windows = sorted(run["admitted"])
    windows = windows[2:] if len(windows) > 2 else windows  # after the governors engage
    unspent = []
    over_cap = 0
    over_quota = 0
    for w in windows:
        got = run["admitted"][w]
        total = sum(got.values())
        granted = run["granted"][w].get("", 0)
        unspent.append(granted - total)
        over_cap += total > capacity
        for user, n in got.items():
            over_quota = max(over_quota, n - run["granted"][w].get(user, 0))
    people = population(run["scenario"])
    quiet = [u for u, group, _ in people if group == "quiet"]
    quiet_offered = sum(rate for u, group, rate in people if group == "quiet") * len(windows)
    quiet_admitted = sum(run["admitted"][w][u] for w in windows for u in quiet)
    out: dict[str, Any] = {
        "unspent_mean_share_of_budget": round(sum(unspent) / len(unspent) / budget, 4),
        "unspent_worst_share_of_budget": round(max(unspent) / budget, 4),
        "unspent_worst": max(unspent),
        "windows_over_cap": over_cap,
        "admitted_beyond_granted": over_quota,
        "quiet_admitted_share": round(quiet_admitted / quiet_offered, 4),
        "admitted_per_window": round(
            sum(sum(run["admitted"][w].values()) for w in windows) / len(windows), 1
        ),
    }
    if exact is not None:
        diff = total_exact = 0
        for w in windows:
            for user, _, _ in people:
                a = run["admitted"][w][user]
                b = exact["admitted"][w][user]
                diff += abs(a - b)
                total_exact += b
        out["distance_from_exact"] = round(diff / total_exact, 4)
        # A flooder held to its fair share: how far past the exact run's admissions
        # a lease took it (the worst flooder, all windows together).
        flooders = [u for u, group, _ in people if group == "flooder"]
        overshoot = [
            sum(run["admitted"][w][u] for w in windows)
            / max(1, sum(exact["admitted"][w][u] for w in windows))
            - 1.0
            for u in flooders
        ]
        out["flooder_overshoot_worst"] = round(max(overshoot), 4) if overshoot else None
        out["admitted_vs_exact"] = round(
            sum(sum(run["admitted"][w].values()) for w in windows)
            / sum(sum(exact["admitted"][w].values()) for w in windows),
            4,
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--nodes", type=int, default=None, help="gates on the Redis (default 4)")
    parser.add_argument("--seconds", type=int, default=None, help="virtual seconds (default 8)")
    args = parser.parse_args(argv)
    nodes = args.nodes or (2 if args.quick else 4)
    seconds = args.seconds or (1 if args.quick else 8)
    logging.getLogger("srtm").setLevel(logging.ERROR)
    info = machine()
    header("leases: round trips saved against accuracy", info)
    configs: list[tuple[str, LeasePolicy | None]] = [("off", None)]
    sizes = (8,) if args.quick else (4, 8, 16, 32, 64)
    configs += [(f"size {n}, horizon 0.05", LeasePolicy(size=n, horizon=0.05)) for n in sizes]
    if not args.quick:
        configs += [
            (f"size 32, horizon {h}", LeasePolicy(size=32, horizon=h)) for h in (0.02, 0.2, 1.0)
        ]
    result: dict[str, Any] = {
        "machine": info,
        "nodes": nodes,
        "seconds": seconds,
        "scenarios": {},
    }
    scenarios = ["held"] if args.quick else list(SCENARIOS)
    with private_redis(args.redis_url) as url:
        for scenario in scenarios:
            capacity, groups = SCENARIOS[scenario]
            print(f"\n-- {scenario}: capacity {capacity:.0f} SR/s, {nodes} nodes, {seconds} s")
            out: dict[str, Any] = {
                "capacity": capacity,
                "budget": capacity * THRESHOLD,
                "population": [{"group": g, "users": n, "rate": r} for g, n, r in groups],
                "configs": {},
            }
            rows = []
            exact = None
            for label, lease in configs:
                run = simulate(url, scenario, nodes, lease, seconds)
                if exact is None:
                    exact = run
                figures = {
                    "lease": None
                    if lease is None
                    else {"size": lease.size, "horizon": lease.horizon},
                    "decisions": run["decisions"],
                    "round_trips_per_decision": round(run["round_trips"] / run["decisions"], 4),
                    "us_per_decision": run["us_per_decision"],
                    **accuracy(run, exact if lease is not None else None),
                }
                out["configs"][label] = figures
                rows.append(
                    [
                        label,
                        f"{figures['round_trips_per_decision']:.4f}",
                        f"{figures['unspent_mean_share_of_budget']:.2%}",
                        f"{figures['unspent_worst_share_of_budget']:.2%}",
                        figures["windows_over_cap"],
                        figures["admitted_beyond_granted"],
                        f"{figures.get('admitted_vs_exact', 1.0):.4f}",
                        f"{figures.get('distance_from_exact', 0.0):.4f}",
                        f"{figures['quiet_admitted_share']:.4f}",
                        "-"
                        if figures.get("flooder_overshoot_worst") is None
                        else f"{figures['flooder_overshoot_worst']:+.2%}",
                        figures["us_per_decision"],
                    ]
                )
            print(
                table(
                    rows,
                    [
                        "lease",
                        "round trips/decision",
                        "unspent (mean)",
                        "unspent (worst)",
                        "windows over cap",
                        "over granted",
                        "admitted vs exact",
                        "distance from exact",
                        "quiet admitted",
                        "flooder overshoot",
                        "us/decision",
                    ],
                    title=f"{scenario}: {capacity:.0f} SR/s, {nodes} nodes, {seconds} s",
                )
            )
            result["scenarios"][scenario] = out
    result["targets"] = targets(result)
    for check in result["targets"]:
        print(f"   {'met   ' if check['met'] else 'MISSED'} {check['target']}: {check['measured']}")
    path = write_json("leases", result, args.out)
    print(f"\nwrote {path}")
    return result


#: The block policy a shared store would get by default: ``LeasePolicy()``'s figures.
DEFAULT = LeasePolicy()
#: Most a lease may take a held flooder past its exactly counted fair share.
OVERSHOOT_MAX = 0.04


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Leases never pass the cap or a grant; the default block keeps a flooder near its share."""
    checks = []
    default = f"size {DEFAULT.size}, horizon {DEFAULT.horizon:g}"
    for scenario, out in result["scenarios"].items():
        configs = out["configs"]
        over = sum(c["windows_over_cap"] for c in configs.values())
        beyond = max(c["admitted_beyond_granted"] for c in configs.values())
        checks.append(
            {
                "target": f"{scenario}: no window over the hard cap, nothing beyond a grant",
                "measured": f"{over} windows over cap, {beyond} beyond a grant",
                "met": over == 0 and beyond <= 0,
            }
        )
        chosen = configs.get(default)
        if chosen is not None and chosen.get("flooder_overshoot_worst") is not None:
            worst = chosen["flooder_overshoot_worst"]
            checks.append(
                {
                    "target": f"{scenario}, leases {default}: a held flooder at most "
                    f"{OVERSHOOT_MAX:.0%} past its exact share",
                    "measured": worst,
                    "met": worst <= OVERSHOOT_MAX,
                }
            )
        if chosen is not None:
            off = configs["off"]
            checks.append(
                {
                    "target": f"{scenario}, leases {default}: fewer store round trips than "
                    "without (a case for leases on shared stores by default)",
                    "measured": f"{chosen['round_trips_per_decision']} vs "
                    f"{off['round_trips_per_decision']} per decision",
                    "met": chosen["round_trips_per_decision"] < off["round_trips_per_decision"],
                }
            )
    return checks


if __name__ == "__main__":
    main()
