"""Top-up latency while 10,000 bulk reads drain through a throttled User.

A User queues 10,000 bulk reads (Read Active Import Profile Data, 4.8.1) at once and,
while they drain, submits a prepayment top-up (Top Up Device, 2.2) every half second.
The gateway is the real ``srtm.middleware.ASGITrafficManager`` under uvicorn, in a
process of its own, with a budget far below what the User offers. For each run this
prints the top-ups' latency (submission to final response: median, 95th percentile,
worst) against the bulk reads' (median, and the time until the last one completed).

    python3 bench/client_topup_latency.py            # the figures in docs/client.md
    python3 bench/client_topup_latency.py --bulk 2000 --clients sync

Runs: the sync and async clients, each with pacing from the RateLimit fields (the
default) and with pacing off (so the User is refused and paused again and again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

CAPACITY = 250.0  # SR/s the protected back end can take
THRESHOLD = 0.8  # traffic management engages at 200 SR/s
ALLOCATION = 50.0  # the User's guaranteed rate; alone, it may use the whole budget
USER = "90-B3-D5-1F-30-01-00-00"


# ---------------------------------------------------------------------------------------
# The gateway, run in its own process: ``--serve PORT``


def serve(port: int) -> None:
    import uvicorn

    from srtm import TrafficPolicy
    from srtm.middleware import ASGITrafficManager

    processed: dict[str, int] = {}

    async def back_end(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] == "/_processed":  # exempt from traffic management: for the bench
            body = json.dumps(
                {
                    "total": sum(processed.values()),
                    "distinct": len(processed),
                    "most": max(processed.values(), default=0),
                }
            ).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        while (await receive()).get("more_body"):
            pass
        rid = dict(scope["headers"]).get(b"x-request-id", b"").decode()
        processed[rid] = processed.get(rid, 0) + 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"<Response/>"})

    policy = TrafficPolicy(
        capacity=CAPACITY,
        threshold=THRESHOLD,
        allocations={USER: ALLOCATION},
        default_allocation=0,
        window=1.0,
    )
    app = ASGITrafficManager(back_end, policy, exempt_paths={"/_processed"})
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


def start_gateway() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)  # polling another process's socket: no event to wait on
    proc.kill()
    raise RuntimeError("the gateway did not start")


# ---------------------------------------------------------------------------------------
# One run


@dataclass
class Result:
    client: str
    pacing: bool
    bulk: int
    top_ups: int
    top_up_median: float
    top_up_p95: float
    top_up_worst: float
    bulk_median: float
    bulk_done: float
    throttle_pauses: int
    retries: int
    lost: int
    duplicated: int
    # (seconds since the start, latency) of every SR, for the figure
    bulk_points: list[tuple[float, float]] = field(default_factory=list, repr=False)
    top_up_points: list[tuple[float, float]] = field(default_factory=list, repr=False)


def run(kind: str, *, pacing: bool, n_bulk: int, every: float) -> Result:
    from srtm.client import (
        AsyncServiceRequestClient,
        ClientEvent,
        Priority,
        ServiceRequest,
        ServiceRequestClient,
        SRSettled,
    )

    proc, url = start_gateway()
    latency: dict[str, float] = {}
    done_at: dict[str, float] = {}
    status: dict[str, int | None] = {}
    bulk_left = threading.Event()
    settled_bulk = 0

    def on_event(event: ClientEvent) -> None:
        nonlocal settled_bulk
        if isinstance(event, SRSettled):
            latency[event.sr.request_id] = event.latency
            done_at[event.sr.request_id] = time.monotonic()
            status[event.sr.request_id] = event.status_code
            if event.priority == Priority.BULK:
                settled_bulk += 1
                if settled_bulk >= 0.95 * n_bulk:
                    bulk_left.set()

    options: dict[str, Any] = {
        "base_url": url,
        "user_id": USER,
        "duis_version": "4.1",
        "follow_rate_limit": pacing,
        "on_event": on_event,
    }
    bulk = [
        ServiceRequest(variant="4.8.1", body=b"<Request/>", request_id=f"bulk-{i}")
        for i in range(n_bulk)
    ]
    top_up_ids: list[str] = []
    started = time.monotonic()
    try:
        if kind == "sync":
            with ServiceRequestClient(**options) as client:
                futures = [client.submit(s) for s in bulk]
                while not bulk_left.wait(every):
                    rid = f"top-up-{len(top_up_ids)}"
                    top_up_ids.append(rid)
                    futures.append(
                        client.submit(
                            ServiceRequest(variant="2.2", body=b"<Request/>", request_id=rid)
                        )
                    )
                for f in futures:
                    f.result()
                stats = client.stats()
        else:

            async def main() -> Any:
                async with AsyncServiceRequestClient(**options) as client:
                    futures = [client.submit(s) for s in bulk]
                    while not bulk_left.is_set():
                        await asyncio.sleep(every)
                        rid = f"top-up-{len(top_up_ids)}"
                        top_up_ids.append(rid)
                        sr = ServiceRequest(variant="2.2", body=b"<Request/>", request_id=rid)
                        futures.append(client.submit(sr))
                    await asyncio.gather(*futures)
                    return client.stats()

            stats = asyncio.run(main())
        bulk_done = time.monotonic() - started
        import httpx

        processed = httpx.get(f"{url}/_processed").json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    tops = sorted(latency[r] for r in top_up_ids)
    bulk_lat = [latency[s.request_id] for s in bulk]
    submitted = n_bulk + len(top_up_ids)
    return Result(
        client=kind,
        pacing=pacing,
        bulk=n_bulk,
        top_ups=len(top_up_ids),
        top_up_median=statistics.median(tops),
        top_up_p95=tops[max(0, round(0.95 * len(tops)) - 1)],
        top_up_worst=tops[-1],
        bulk_median=statistics.median(bulk_lat),
        bulk_done=max(bulk_lat) if bulk_lat else bulk_done,
        throttle_pauses=stats.throttle_pauses,
        retries=stats.retries,
        # Lost: submitted but not processed, or no 200 for its caller.
        lost=max(
            submitted - processed["distinct"], submitted - sum(s == 200 for s in status.values())
        ),
        # Duplicated: processed by the back end more than once.
        duplicated=processed["total"] - processed["distinct"],
        bulk_points=[(done_at[s.request_id] - started, latency[s.request_id]) for s in bulk],
        top_up_points=[(done_at[r] - started, latency[r]) for r in top_up_ids],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bulk", type=int, default=10_000)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between top-ups")
    parser.add_argument("--clients", default="sync,async")
    parser.add_argument("--pacing", default="on,off")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", metavar="PNG", help="also draw latency against time")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}; gateway budget "
        f"{THRESHOLD * CAPACITY:.0f} SR/s (capacity {CAPACITY:.0f}, allocation {ALLOCATION:.0f})"
    )
    print(
        "| client | pacing | top-ups | top-up median | p95 | worst | bulk median "
        "| last bulk done | pauses | retries | lost | duplicated |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for kind in args.clients.split(","):
        for pacing in (p == "on" for p in args.pacing.split(",")):
            r = run(kind, pacing=pacing, n_bulk=args.bulk, every=args.every)
            results.append(r)
            print(
                f"| {r.client} | {'on' if r.pacing else 'off'} | {r.top_ups} "
                f"| {r.top_up_median:.2f} s | {r.top_up_p95:.2f} s | {r.top_up_worst:.2f} s "
                f"| {r.bulk_median:.1f} s | {r.bulk_done:.1f} s | {r.throttle_pauses} "
                f"| {r.retries} | {r.lost} | {r.duplicated} |",
                flush=True,
            )
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    if args.plot:
        plot(results, args.plot)


def plot(results: list[Result], path: str) -> None:
    """Latency against completion time, one panel per run: bulk reads and top-ups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(results), figsize=(4.2 * len(results), 3.6), sharey=True, squeeze=False
    )
    for ax, r in zip(axes[0], results, strict=True):
        bx, by = zip(*r.bulk_points, strict=True)
        ax.scatter(bx, by, s=1, color="0.6", label=f"bulk reads ({r.bulk:,})", rasterized=True)
        if r.top_up_points:
            tx, ty = zip(*r.top_up_points, strict=True)
            ax.scatter(tx, ty, s=9, color="tab:red", label=f"top-ups ({r.top_ups})")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_title(f"{r.client} client, pacing {'on' if r.pacing else 'off'}", fontsize=10)
        ax.set_xlabel("completed at (s after the bulk reads were queued)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("latency: submitted to answered (s)")
    axes[0][0].legend(loc="upper left", fontsize=8, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
