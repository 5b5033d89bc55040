"""Several gateway processes sharing one Redis: decisions per second, one global allocation.

Each node is a process of its own running a sync :class:`srtm.Gate` on the real clock
(recomputing every control period, as the background thread would) against one
private redis-server. Two phases, each with and without leases:

* ``admitted``: traffic management inactive; every node decides as fast as it can for
  50 Users in turn. Aggregate decisions per second, against the number of nodes.
* ``held``: capacity 2,000 SR/s (budget 1,600), 50 Users: 25 flood from every node, 25
  send a steady 10 SR/s each (spread over the nodes). One global allocation means each
  flooder is held to one fair share across all nodes, ``(1600 - 25*10) / 25 = 54`` a
  window, not to one per node; the steady Users keep everything; and the pool's
  admitted total never passes the cap. Reported per window (after the first two, while
  the governors engage): admitted against fair share, the total against budget and cap,
  and with leases what the store granted but no node admitted (the unspent blocks).

On a 2-CPU machine the nodes and Redis share two cores: aggregate decisions per second
stop growing at two nodes; the per-node figure shows the contention.

Usage: ``python bench/multinode.py [--quick] [--nodes 1,2,4] [--seconds S]``.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    base_parser,
    flush_redis,
    header,
    machine,
    median,
    private_redis,
    table,
    write_json,
)

USERS = 50
FLOODERS = 25
STEADY_RATE = 10.0  # SR/s of each steady User, all nodes together
CAPACITY = 2000.0
THRESHOLD = 0.8


def names() -> list[str]:
    return [f"90-B3-D5-1F-30-01-{k // 256:02X}-{k % 256:02X}" for k in range(USERS)]


def node(
    index: int,
    nodes: int,
    url: str,
    phase: str,
    lease: bool,
    start: Any,
    seconds: float,
    out: Any,
) -> None:
    """One gateway node: decide until the end, then report counts per window and User."""
    import logging

    from srtm import Gate, Identity, TrafficPolicy
    from srtm.lease import LeasePolicy

    logging.getLogger("srtm").setLevel(logging.ERROR)
    users = names()
    ids = [Identity(u, "4.1") for u in users]
    if phase == "admitted":
        policy = TrafficPolicy(capacity=1e9, storage=url, nodes=nodes)
    else:
        policy = TrafficPolicy(
            capacity=CAPACITY,
            threshold=THRESHOLD,
            allocations=dict.fromkeys(users, CAPACITY * THRESHOLD / USERS),
            storage=url,
            nodes=nodes,
        )
    if lease:
        import dataclasses

        policy = dataclasses.replace(policy, lease=LeasePolicy())
    gate = Gate(policy, background=False)
    period = policy.control_period or policy.window
    admitted: defaultdict[tuple[int, int], int] = defaultdict(int)
    offered: defaultdict[tuple[int, int], int] = defaultdict(int)
    statuses: Counter[int] = Counter()
    # Steady Users: each node sends 1/nodes of their rate, staggered.
    steady = list(range(FLOODERS, USERS))
    gap = nodes / (STEADY_RATE * len(steady))  # seconds between this node's steady sends
    out.put(("ready", index))
    start_at = start.get()  # the common start, once every node is ready
    while time.time() < start_at:
        time.sleep(0.001)  # waiting for the common start: a wall-clock deadline
    now = time.time()
    next_tick = now
    next_steady = now + index * gap / nodes
    end = start_at + seconds
    decisions = 0
    i = index
    s = 0
    while now < end:
        if now >= next_tick:
            gate.tick(now=now)
            next_tick += period
        if phase == "held" and now >= next_steady:
            u = steady[s % len(steady)]
            s += 1
            next_steady += gap
        else:
            u = i % (USERS if phase == "admitted" else FLOODERS)
            i += 1
        d = gate.decide(ids[u], now=now)
        window = int(now // policy.window)
        offered[(window, u)] += 1
        admitted[(window, u)] += d.admitted
        statuses[d.status] += 1
        decisions += 1
        now = time.time()
    gate.close()
    out.put(
        {
            "index": index,
            "decisions": decisions,
            "seconds": seconds,
            "statuses": dict(statuses),
            "admitted": {f"{w}:{u}": n for (w, u), n in admitted.items()},
            "offered": {f"{w}:{u}": n for (w, u), n in offered.items()},
        }
    )


def granted(url: str, windows: list[int]) -> dict[int, int]:
    """The store's admitted total per window: what it granted, leases included."""
    import redis

    from srtm.ledger import redis_keys

    client = redis.Redis.from_url(url)
    try:
        return {w: int(client.hget(redis_keys("default", w)[1], "") or 0) for w in windows}
    finally:
        client.close()


def run(url: str, nodes: int, phase: str, lease: bool, seconds: float) -> dict[str, Any]:
    """Start ``nodes`` processes together; gather and combine what they report."""
    flush_redis(url)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start = ctx.Queue()
    procs = [
        ctx.Process(target=node, args=(k, nodes, url, phase, lease, start, seconds, queue))
        for k in range(nodes)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        queue.get(timeout=120)  # "ready": the interpreter started and the gate is built
    start_at = time.time() + 0.2
    for _ in procs:
        start.put(start_at)
    store = watch_store(url, start_at, seconds) if phase == "held" else {}
    reports = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    decisions = sum(r["decisions"] for r in reports)
    out: dict[str, Any] = {
        "nodes": nodes,
        "lease": lease,
        "decisions": decisions,
        "decisions_per_s": round(decisions / seconds, 1),
        "per_node_decisions_per_s": [round(r["decisions"] / seconds, 1) for r in reports],
        "statuses": dict(sum((Counter(r["statuses"]) for r in reports), Counter())),
    }
    if phase == "held":
        out.update(held_figures(store, reports, nodes))
    return out


def watch_store(url: str, start_at: float, seconds: float) -> dict[int, int]:
    """Read each window's admitted total from the store as the window ends.

    Read then, not after the run: the keys expire on real time a few seconds later.
    """
    out: dict[int, int] = {}
    window = int(start_at)
    while window < start_at + seconds:
        time.sleep(max(0.0, window + 1.05 - time.time()))  # just after the window ends
        out.update(granted(url, [window]))
        window += 1
    return out


def held_figures(
    store: dict[int, int], reports: list[dict[str, Any]], nodes: int
) -> dict[str, Any]:
    """Per window, across nodes: each User's admitted count against its fair share."""
    admitted: defaultdict[int, Counter[int]] = defaultdict(Counter)
    offered: defaultdict[int, Counter[int]] = defaultdict(Counter)
    for r in reports:
        for key, n in r["admitted"].items():
            w, u = map(int, key.split(":"))
            admitted[w][u] += n
        for key, n in r["offered"].items():
            w, u = map(int, key.split(":"))
            offered[w][u] += n
    windows = sorted(admitted)
    # after the governors engage; the last window is partial (short runs keep what they have)
    windows = windows[2:-1] if len(windows) > 3 else windows[1:] or windows
    windows = [w for w in windows if w in store]
    budget = CAPACITY * THRESHOLD
    steady_total = STEADY_RATE * (USERS - FLOODERS)
    fair = (budget - steady_total) / FLOODERS
    rows = []
    for w in windows:
        flood = [admitted[w][u] for u in range(FLOODERS)]
        steady_admitted = sum(admitted[w][u] for u in range(FLOODERS, USERS))
        steady_offered = sum(offered[w][u] for u in range(FLOODERS, USERS))
        total = sum(admitted[w].values())
        rows.append(
            {
                "window": w,
                "total": total,
                "granted": store[w],
                "unspent": store[w] - total,
                "flooder_min": min(flood),
                "flooder_max": max(flood),
                "flooder_mean": round(sum(flood) / len(flood), 2),
                "steady_admitted": steady_admitted,
                "steady_offered": steady_offered,
            }
        )
    return {
        "fair_share_per_window": fair,
        "budget_per_window": budget,
        "cap_per_window": CAPACITY,
        "windows": rows,
        "flooder_max_over_fair": round(max(r["flooder_max"] for r in rows) / fair, 3),
        "flooder_mean_over_fair": round(median([r["flooder_mean"] for r in rows]) / fair, 3),
        "total_over_budget": round(median([r["total"] for r in rows]) / budget, 3),
        "max_total_over_cap": round(max(r["total"] for r in rows) / CAPACITY, 3),
        "max_granted_over_cap": round(max(r["granted"] for r in rows) / CAPACITY, 3),
        "unspent_share": round(
            sum(r["unspent"] for r in rows) / max(1, sum(r["granted"] for r in rows)), 4
        ),
        "steady_admitted_share": round(
            sum(r["steady_admitted"] for r in rows)
            / max(1, sum(r["steady_offered"] for r in rows)),
            4,
        ),
        "one_allocation_per_node_would_give": round(fair * nodes, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--nodes", default=None, help="comma-separated node counts (1,2,4)")
    parser.add_argument("--seconds", type=float, default=None, help="per run (default 6)")
    args = parser.parse_args(argv)
    counts = [int(x) for x in (args.nodes or ("2" if args.quick else "1,2,4")).split(",")]
    seconds = args.seconds or (0.5 if args.quick else 6.0)
    held_seconds = 2.0 if args.quick else max(seconds, 8.0)
    leases = (True,) if args.quick else (False, True)
    info = machine()
    header("several gateway processes on one Redis", info)
    result: dict[str, Any] = {"machine": info, "seconds": seconds, "admitted": [], "held": []}
    with private_redis(args.redis_url) as url:
        for lease in leases:
            for n in counts:
                result["admitted"].append(run(url, n, "admitted", lease, seconds))
        for lease in leases:
            for n in [c for c in counts if c > 1] or counts:
                result["held"].append(run(url, n, "held", lease, held_seconds))
    print("\n-- admitted (TM inactive): aggregate decisions per second")
    print(
        table(
            [
                [
                    r["nodes"],
                    "on" if r["lease"] else "off",
                    f"{r['decisions_per_s']:.0f}",
                    " ".join(f"{x:.0f}" for x in r["per_node_decisions_per_s"]),
                ]
                for r in result["admitted"]
            ],
            ["nodes", "lease", "decisions/s", "per node"],
            title="admitted (TM inactive): aggregate decisions per second",
        )
    )
    print("\n-- held (TM active): one global allocation")
    print(
        table(
            [
                [
                    r["nodes"],
                    "on" if r["lease"] else "off",
                    f"{r['decisions_per_s']:.0f}",
                    f"{r['fair_share_per_window']:.0f}",
                    f"{r['flooder_mean_over_fair']:.3f}",
                    f"{r['flooder_max_over_fair']:.3f}",
                    f"{r['total_over_budget']:.3f}",
                    f"{r['max_granted_over_cap']:.3f}",
                    f"{r['unspent_share']:.4f}",
                    f"{r['steady_admitted_share']:.4f}",
                ]
                for r in result["held"]
            ],
            [
                "nodes",
                "lease",
                "decisions/s",
                "fair share",
                "flooder mean/fair",
                "flooder max/fair",
                "total/budget",
                "max granted/cap",
                "unspent share",
                "steady admitted",
            ],
            title="held (TM active): one global allocation",
        )
    )
    path = write_json("multinode", result, args.out)
    print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
