"""Redis round trips per decision, counted by the server (``INFO commandstats``).

A private redis-server counts every command it runs. Commands that only ever run
inside a Lua script (``hincrby``, ``hget``, ``hgetall``, ``expire``, ``incrby``, and
the heartbeat's ``hset``, ``pexpire``, ``time``, ``zadd``, ``zcount``,
``zremrangebyscore``) are not round trips; everything else the clients send is:
``evalsha``/``eval`` (srtm's one script call, ``limits``' fixed-window increment),
``get``/``ttl`` (``limits``' window statistics), ``script|load``. srtm never
pipelines, so for srtm a command is a round trip.

Scenarios, each for srtm's sync and async gates with and without leases, and for the
peers where they apply:

* ``admitted``: 50 Users, everything admitted (traffic management inactive);
* ``refused``: one User already over its limit (a 10 s window, so the counted
  requests all fall in the window it is over in), every request refused;
* ``flood``: one identity at 20,000 SR/s against a 100 SR/s pool for 5 s of the
  virtual clock: its first requests of each window admitted, then refused;
* ``held``: traffic management active (budget 8,000 SR/s), 49 Users within their
  share (41 SR/s each) and one flooding at 18,000 SR/s, held to its fair share.

srtm's recomputation (one script call per pool and control period per node, the
``flush``) is counted apart from the decisions: it does not grow with traffic.

Then the cost of one decision against one raw ``limits`` fixed-window hit on the same
Redis, one request at a time in process (medians of interleaved rounds), and the async
gate's coalesced calls at 1, 8 and 32 concurrent tasks, every request
in one window: store commands per admitted request (50 Users; concurrent Users share
one batched script call), and store commands that carried a refusal of one User
another node has already taken past its limit (single-flight: at most one per User and
window, whatever the concurrency). Round trips there are commands: a batch is one.

Usage: ``python bench/roundtrips.py [--quick] [--redis-url URL]``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
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
from srtm import Identity, TrafficPolicy
from srtm.aio.gate import AsyncGate
from srtm.gate import Gate
from srtm.lease import LeasePolicy

#: Commands that only run inside Lua scripts here: not round trips.
INSIDE_SCRIPTS = {
    "hincrby",
    "hget",
    "hgetall",
    "expire",
    "incrby",  # the decision scripts, limits'
    "hset",
    "pexpire",
    "time",
    "zadd",
    "zcount",
    "zremrangebyscore",  # SYNC_SCRIPT
}
RATE = 20_000.0
START = 1_700_000_000.0
LEASE = LeasePolicy()


class CommandCount:
    """Deltas of the server's per-command call counts."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.before = self.read()

    def read(self) -> Counter[str]:
        stats = self.client.info("commandstats")
        return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})

    def delta(self) -> dict[str, int]:
        after = self.read()
        out = {k: after[k] - self.before.get(k, 0) for k in after}
        out.pop("info", None)  # our own probes
        return {k: v for k, v in sorted(out.items()) if v}

    def close(self) -> None:
        self.client.close()


def round_trips(commands: dict[str, int]) -> int:
    return sum(v for k, v in commands.items() if k not in INSIDE_SCRIPTS)


# -- traffic patterns -----------------------------------------------------------------------


def policies(url: str, names: list[str]) -> dict[str, TrafficPolicy]:
    allocations = dict.fromkeys(names, 100.0)
    return {
        "admitted": TrafficPolicy(capacity=100 * RATE, storage=url),
        # a 10 s window, so every counted refusal falls in the window the User is over in
        "refused": TrafficPolicy(capacity=100, window=10.0, storage=url),
        "flood": TrafficPolicy(capacity=100, storage=url),
        "held": TrafficPolicy(
            capacity=RATE / 2, threshold=0.8, allocations=allocations, storage=url
        ),
    }


def pattern(scenario: str, n: int, names: list[str]) -> list[str]:
    """Who sends each request, in order."""
    if scenario == "admitted":
        return [names[i % len(names)] for i in range(n)]
    if scenario in ("refused", "flood"):
        return [names[0]] * n
    # held: one flooder sends 9 requests in 10 (18,000 SR/s), 49 Users share the rest
    others = names[1:]
    return [names[0] if i % 10 else others[(i // 10) % len(others)] for i in range(n)]


def warmup(scenario: str, names: list[str]) -> list[str]:
    """Requests sent before counting starts (scripts loaded, the User over its limit)."""
    if scenario == "refused":
        return [names[0]] * 1000  # past its 800 a window
    if scenario == "held":
        return pattern("held", 2 * int(RATE), names)  # two virtual seconds: TM engages
    return [names[i % len(names)] for i in range(200)]


# -- srtm -----------------------------------------------------------------------------------


def run_sync(
    policy: TrafficPolicy, warm: list[str], users: list[str], counter: Any
) -> tuple[Counter[int], int, dict[str, int]]:
    """Decide ``warm``, then count the server's commands over ``users``' decisions."""
    clock = _apps.StepClock(START, 1.0 / RATE)
    gate = Gate(policy, clock=clock, background=False)
    every = round((policy.control_period or policy.window) * RATE)
    ids = {u: Identity(u, "4.1") for u in set(warm) | set(users)}
    i = 0
    for u in warm:
        if i % every == 0:
            gate.tick()
        gate.decide(ids[u])
        i += 1
    statuses: Counter[int] = Counter()
    ticks = 0
    count = counter()
    for u in users:
        if i % every == 0:
            gate.tick()
            ticks += 1
        statuses[gate.decide(ids[u]).status] += 1
        i += 1
    commands = count.delta()
    count.close()
    gate.close()
    return statuses, ticks, commands


async def run_async(
    policy: TrafficPolicy, warm: list[str], users: list[str], counter: Any
) -> tuple[Counter[int], int, dict[str, int]]:
    clock = _apps.StepClock(START, 1.0 / RATE)
    gate = AsyncGate(policy, clock=clock, background=False)
    every = round((policy.control_period or policy.window) * RATE)
    ids = {u: Identity(u, "4.1") for u in set(warm) | set(users)}
    i = 0
    for u in warm:
        if i % every == 0:
            await gate.tick()
        await gate.decide(ids[u])
        i += 1
    statuses: Counter[int] = Counter()
    ticks = 0
    count = counter()
    for u in users:
        if i % every == 0:
            await gate.tick()
            ticks += 1
        statuses[(await gate.decide(ids[u])).status] += 1
        i += 1
    commands = count.delta()
    count.close()
    await gate.close()
    return statuses, ticks, commands


def measure_srtm(
    url: str, kind: str, policy: TrafficPolicy, warm: list[str], users: list[str]
) -> dict[str, Any]:
    flush_redis(url)
    if kind == "sync":
        statuses, ticks, commands = run_sync(policy, warm, users, lambda: CommandCount(url))
    else:
        statuses, ticks, commands = asyncio.run(
            run_async(policy, warm, users, lambda: CommandCount(url))
        )
    total = round_trips(commands)
    decisions = len(users)
    flushes = ticks  # one script call per pool and recomputation
    return {
        "decisions": decisions,
        "statuses": dict(statuses),
        "commands": commands,
        "round_trips": total,
        "recomputations": flushes,
        "round_trips_per_decision": round((total - flushes) / decisions, 5),
        "round_trips_per_decision_with_recomputation": round(total / decisions, 5),
    }


# -- concurrency: the async gate's coalesced calls ---------------------------------------------

#: Concurrent tasks deciding at once (connections in flight, for a server).
CONCURRENCY = (1, 8, 32)
#: A virtual instant inside one 10 s window: every request of a run falls in it.
AT = START + 1.0


async def run_concurrent(
    url: str, scenario: str, tasks: int, n: int, names: list[str]
) -> dict[str, Any]:
    """``n`` decisions split over ``tasks`` tasks, all in one window; server commands counted.

    ``admitted``: 50 Users, nothing refused. ``refused``: one User another node has
    already taken past its limit, so this node learns of the refusal from the store.
    """
    import time

    policy = TrafficPolicy(
        capacity=100 * RATE if scenario == "admitted" else 100, window=10.0, storage=url
    )
    if scenario == "refused":
        other = AsyncGate(policy, background=False)
        await other.decide(Identity(names[0], "4.1"), 10_000, now=AT)  # past its limit
        await other.close()
    gate = AsyncGate(policy, background=False)
    ids = [Identity(u, "4.1") for u in names]
    who = [ids[i % len(ids)] for i in range(n)] if scenario == "admitted" else [ids[0]] * n
    # both scripts loaded, so a first call's NOSCRIPT is not counted
    await asyncio.gather(*(gate.decide(Identity(f"warm{i}", "4.1"), now=AT) for i in range(3)))
    statuses: Counter[int] = Counter()
    count = CommandCount(url)

    async def worker(j: int) -> None:
        for i in range(j, n, tasks):
            statuses[(await gate.decide(who[i], now=AT + i * 1e-7)).status] += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(j) for j in range(tasks)))
    seconds = time.perf_counter() - began
    commands = count.delta()
    count.close()
    await gate.close()
    total = round_trips(commands)
    admitted = statuses.get(200, 0)
    return {
        "tasks": tasks,
        "decisions": n,
        "statuses": dict(statuses),
        "commands": commands,
        "round_trips": total,
        "per_admitted": round(total / admitted, 5) if admitted else None,
        # one User, one window: every store command of the run carried its refusals
        "refusal_calls_per_user_window": total if scenario == "refused" else None,
        "us_per_decision": round(seconds / n * 1e6, 2),
    }


def measure_concurrency(url: str, n: int, names: list[str]) -> dict[str, Any]:
    """Both scenarios at each concurrency, on an emptied store each time."""
    out: dict[str, Any] = {}
    for scenario in ("admitted", "refused"):
        for tasks in CONCURRENCY:
            flush_redis(url)
            out[f"{scenario} c={tasks}"] = asyncio.run(
                run_concurrent(url, scenario, tasks, n, names)
            )
    return out


# -- cost per request: srtm's decision against one raw limits hit ------------------------------


def _sync_costs(url: str, n: int, names: list[str]) -> dict[str, float]:
    """Microseconds per call, one at a time: Gate.decide (leases off and on), a raw hit."""
    import time

    from limits import RateLimitItemPerSecond
    from limits.storage import storage_from_string
    from limits.strategies import FixedWindowRateLimiter

    ids = [Identity(u, "4.1") for u in names]
    out: dict[str, float] = {}
    for label, lease in (("srtm sync", None), ("srtm sync, lease", LEASE)):
        gate = Gate(TrafficPolicy(capacity=100 * RATE, storage=url, lease=lease), background=False)
        for i in range(200):
            gate.decide(ids[i % len(ids)])
        began = time.perf_counter()
        for i in range(n):
            gate.decide(ids[i % len(ids)])
        out[label] = (time.perf_counter() - began) / n * 1e6
        gate.close()
    storage = storage_from_string(url)
    limiter, item = FixedWindowRateLimiter(storage), RateLimitItemPerSecond(_apps.HIGH)
    for i in range(200):
        limiter.hit(item, names[i % len(names)])
    began = time.perf_counter()
    for i in range(n):
        limiter.hit(item, names[i % len(names)])
    out["limits hit, sync"] = (time.perf_counter() - began) / n * 1e6
    return out


async def _async_costs(url: str, n: int, names: list[str]) -> dict[str, float]:
    """The async twin of :func:`_sync_costs` (redis-py's asyncio client on both sides)."""
    import time

    from limits import RateLimitItemPerSecond
    from limits.aio.strategies import FixedWindowRateLimiter
    from limits.storage import storage_from_string

    ids = [Identity(u, "4.1") for u in names]
    out: dict[str, float] = {}
    for label, lease in (("srtm async", None), ("srtm async, lease", LEASE)):
        gate = AsyncGate(
            TrafficPolicy(capacity=100 * RATE, storage=url, lease=lease), background=False
        )
        for i in range(200):
            await gate.decide(ids[i % len(ids)])
        began = time.perf_counter()
        for i in range(n):
            await gate.decide(ids[i % len(ids)])
        out[label] = (time.perf_counter() - began) / n * 1e6
        await gate.close()
    storage = storage_from_string("async+" + url, implementation="redispy")
    limiter, item = FixedWindowRateLimiter(storage), RateLimitItemPerSecond(_apps.HIGH)
    for i in range(200):
        await limiter.hit(item, names[i % len(names)])
    began = time.perf_counter()
    for i in range(n):
        await limiter.hit(item, names[i % len(names)])
    out["limits hit, async"] = (time.perf_counter() - began) / n * 1e6
    await storage.bridge.get_connection().aclose()  # type: ignore[attr-defined]
    return out


def measure_costs(url: str, n: int, names: list[str], rounds: int) -> dict[str, Any]:
    """Medians over interleaved rounds (the machine is shared: ratios within one run)."""
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        flush_redis(url)
        got = {**_sync_costs(url, n, names), **asyncio.run(_async_costs(url, n, names))}
        for label, us in got.items():
            samples.setdefault(label, []).append(us)
    medians = {label: sorted(v)[len(v) // 2] for label, v in samples.items()}
    return {
        "rounds": rounds,
        "requests_per_round": n,
        "us_median": {k: round(v, 1) for k, v in medians.items()},
        "us_spread": {k: [round(min(v), 1), round(max(v), 1)] for k, v in samples.items()},
        "ratio_to_limits_hit": {
            label: round(us / medians[f"limits hit, {label.split()[1].rstrip(',')}"], 3)
            for label, us in medians.items()
            if label.startswith("srtm")
        },
    }


# -- peers ----------------------------------------------------------------------------------


def measure_peer(
    url: str, name: str, scenario: str, warm: list[str], users: list[str]
) -> dict[str, Any]:
    flush_redis(url)
    amount = _apps.HIGH if scenario == "admitted" else 1
    loop = asyncio.new_event_loop()
    try:
        if name == "slowapi":
            driver: Any = _apps.AsgiDriver(_apps.slowapi_app(url, amount), sorted(set(users)))
            run = lambda n: loop.run_until_complete(driver.run(n))  # noqa: E731
        elif name == "flask-limiter":
            driver = _apps.WsgiDriver(_apps.flask_limiter_app(url, amount), sorted(set(users)))
            run = driver.run
        else:  # the floor: one raw limits hit
            driver = _apps.WsgiDriver(_apps.floor_wsgi(url, amount), sorted(set(users)))
            run = driver.run
        run(len(warm))
        driver.statuses.clear()
        count = CommandCount(url)
        run(len(users))
        commands = count.delta()
        count.close()
    finally:
        _apps.close_storages(loop)
        loop.close()
    total = round_trips(commands)
    return {
        "decisions": len(users),
        "statuses": dict(driver.statuses),
        "commands": commands,
        "round_trips": total,
        "round_trips_per_decision": round(total / len(users), 5),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("-n", type=int, default=None, help="decisions counted (default 20000)")
    args = parser.parse_args(argv)
    n = args.n or (100 if args.quick else 20_000)
    logging.getLogger("srtm.policy").setLevel(logging.ERROR)
    info = machine()
    header("Redis round trips per decision", info)
    names = _apps.users(50)
    result: dict[str, Any] = {"machine": info, "decisions": n, "scenarios": {}}
    rows = []
    with private_redis(args.redis_url) as url:
        for scenario, policy in policies(url, names).items():
            users = pattern(scenario, n if scenario != "flood" else 5 * int(RATE), names)
            if args.quick and scenario == "flood":
                users = users[:n]
            warm = warmup(scenario, names)
            if args.quick:
                warm = warm[: 1000 if scenario == "refused" else 300]
            out: dict[str, Any] = {}
            for kind in ("sync", "async"):
                for lease in (None, LEASE):
                    label = f"srtm {kind}" + (", lease" if lease else "")
                    p = TrafficPolicy(**{**_fields(policy), "lease": lease})
                    out[label] = measure_srtm(url, kind, p, warm, users)
            if scenario != "held" and not (args.quick and scenario == "flood"):
                peer_users = users[: min(len(users), n)]
                for peer in ("floor", "slowapi", "flask-limiter"):
                    if peer != "floor" and not _apps.installed(peer):
                        continue
                    out[peer] = measure_peer(url, peer, scenario, warm[:200], peer_users)
            result["scenarios"][scenario] = out
            for label, fig in out.items():
                rows.append(
                    [
                        scenario,
                        label,
                        fig["decisions"],
                        f"{fig['round_trips_per_decision']:.4f}",
                        fig.get("recomputations", "-"),
                        " ".join(f"{k}:{v}" for k, v in sorted(fig["statuses"].items())),
                        " ".join(f"{k}:{v}" for k, v in fig["commands"].items()),
                    ]
                )
        conc = measure_concurrency(url, min(n, 5000), names)
        result["concurrency"] = conc
        costs = measure_costs(url, min(n, 3000), names, 3 if args.quick else 7)
        result["cost_per_request"] = costs
        crow = [
            [
                label,
                fig["decisions"],
                fig["round_trips"],
                "-" if fig["per_admitted"] is None else f"{fig['per_admitted']:.4f}",
                "-"
                if fig["refusal_calls_per_user_window"] is None
                else fig["refusal_calls_per_user_window"],
                fig["us_per_decision"],
            ]
            for label, fig in conc.items()
        ]
    print(
        table(
            [
                [label, us, costs["ratio_to_limits_hit"].get(label, "-")]
                for label, us in costs["us_median"].items()
            ],
            ["one request at a time, in process", "us (median)", "/ limits hit"],
            title="Redis, one request at a time, in process (medians of rounds)",
        )
    )
    print(
        table(
            crow,
            [
                "srtm async, concurrent tasks",
                "decisions",
                "round trips",
                "per admitted",
                "refusal calls / User / window",
                "us/decision (shared machine)",
            ],
            title="the async gate under concurrency: coalesced store calls",
        )
    )
    print(
        table(
            rows,
            [
                "scenario",
                "variant",
                "decisions",
                "round trips/decision",
                "recomputations",
                "statuses",
                "server commands",
            ],
            title="store commands per decision, by scenario",
        )
    )
    checks = targets(result)
    for check in checks:
        print(f"   {'met   ' if check['met'] else 'MISSED'} {check['target']}: {check['measured']}")
    result["targets"] = checks
    path = write_json("roundtrips", result, args.out)
    print(f"\nwrote {path}")
    return result


def _fields(policy: TrafficPolicy) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy)}


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """At most one round trip per admitted request; none for a refusal of a User over."""
    checks = []
    for label in ("srtm sync", "srtm async", "srtm sync, lease", "srtm async, lease"):
        admitted = result["scenarios"]["admitted"][label]["round_trips_per_decision"]
        checks.append(
            {
                "target": f"{label}: at most 1 round trip per admitted request",
                "measured": admitted,
                "met": admitted <= 1.0,
            }
        )
        refused = result["scenarios"]["refused"][label]["round_trips_per_decision"]
        checks.append(
            {
                "target": f"{label}: no round trip for a refusal of a User over its limit",
                "measured": refused,
                "met": refused <= 0.001,
            }
        )
    for label, ratio in result.get("cost_per_request", {}).get("ratio_to_limits_hit", {}).items():
        if "lease" not in label:
            checks.append(
                {
                    "target": f"{label}, Redis without leases: within 1.2x of a raw limits hit "
                    "per request (in process, one at a time)",
                    "measured": ratio,
                    "met": ratio <= 1.2,
                }
            )
    for label, fig in result.get("concurrency", {}).items():
        if fig["per_admitted"] is not None and label.startswith("admitted"):
            checks.append(
                {
                    "target": f"srtm async, {label}: at most 1 store command per admitted request",
                    "measured": fig["per_admitted"],
                    "met": fig["per_admitted"] <= 1.0,
                }
            )
        if fig["refusal_calls_per_user_window"] is not None:
            checks.append(
                {
                    "target": f"srtm async, {label}: refusals reach the store at most once "
                    "per User per window",
                    "measured": fig["refusal_calls_per_user_window"],
                    "met": fig["refusal_calls_per_user_window"] <= 1,
                }
            )
    return checks


if __name__ == "__main__":
    main()
