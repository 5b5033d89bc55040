"""The reference flood: capacity 100 SR/s, threshold 0.8, Users a/b/c at 40/30/10 SR/s.

a sends 35 SR/s and b 25 SR/s (both within their allocations); c floods at 1,000 SR/s
from t=2 s to t=8 s. Run twice:

* ``virtual``: the gate on an injected clock, requests offered in 10 ms slices at exactly
  those rates (what the mechanism does, free of load-generator noise);
* ``http``: the ASGI middleware under uvicorn on loopback, a and b paced by threads and
  c flooding on several connections as fast as this machine lets it.

Prints a per-window table and a summary, and writes JSON (and a PNG with --plot) to
the output folder. Usage: ``python bench/scenario_flood.py [--mode virtual|http|both]
[--out docs/figures]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from srtm import Gate, Identity, TrafficPolicy

ALLOCATIONS = {"a": 40.0, "b": 30.0, "c": 10.0}
RATES = {"a": 35, "b": 25}
FLOOD_RATE, FLOOD_FROM, FLOOD_TO, SECONDS = 1000, 2, 8, 12


def policy() -> TrafficPolicy:
    return TrafficPolicy(capacity=100, threshold=0.8, allocations=ALLOCATIONS)


def virtual() -> dict[str, Any]:
    """Offer exact rates on a virtual clock; tick four times a window like the middleware."""
    gate = Gate(policy(), background=False)
    slices = 100
    windows: list[dict[str, Any]] = []
    owed: Counter[str] = Counter()
    for second in range(SECONDS):
        offered: Counter[str] = Counter()
        admitted: Counter[str] = Counter()
        for k in range(slices):
            now = second + k / slices
            if k % (slices // 4) == 0:
                gate.tick(now=now)
            rates = dict(RATES)
            if FLOOD_FROM <= second < FLOOD_TO:
                rates["c"] = FLOOD_RATE
            users = sorted(rates, key=lambda u: (k + hash(u)) % 3)  # vary who goes first
            for user in users:
                owed[user] += rates[user]
                n, owed[user] = divmod(owed[user], slices)
                if n:
                    decision = gate.decide(Identity(user, "4.1"), n, now=now + 0.001)
                    offered[user] += n
                    admitted[user] += decision.admitted
        windows.append(
            {
                "t": second,
                "offered": dict(offered),
                "admitted": dict(admitted),
                "active": gate.pool("default").governor.active,
            }
        )
    return summarise("virtual clock, exact rates", windows)


def http(connections: int = 6) -> dict[str, Any]:
    """The same over real HTTP: uvicorn, the ASGI middleware, httpx clients in threads."""
    import httpx
    import uvicorn

    from srtm.middleware import ASGITrafficManager

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    manager = ASGITrafficManager(app, policy())
    server = uvicorn.Server(uvicorn.Config(manager, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)  # uvicorn exposes no event for "listening"
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    events: list[tuple[float, str, int]] = []
    lock = threading.Lock()
    start = float(int(time.time()) + 1)  # on a window boundary: table rows are windows
    stop_at = start + SECONDS

    def record(user: str, status: int) -> None:
        with lock:
            events.append((time.time() - start, user, status))

    def steady(user: str, rate: int) -> None:
        headers = {"X-Service-User-ID": user, "X-DUIS-Version": "4.1"}
        with httpx.Client(base_url=base, headers=headers) as client:
            i = 0
            while (due := start + i / rate) < stop_at:
                time.sleep(max(0.0, due - time.time()))  # pacing
                record(user, client.post("/sr", content=b"<Request/>").status_code)
                i += 1

    def flood() -> None:
        headers = {"X-Service-User-ID": "c", "X-DUIS-Version": "4.1"}
        with httpx.Client(base_url=base, headers=headers) as client:
            time.sleep(max(0.0, start + FLOOD_FROM - time.time()))
            while time.time() < start + FLOOD_TO:
                record("c", client.post("/sr", content=b"<Request/>").status_code)

    workers = [threading.Thread(target=steady, args=item) for item in RATES.items()]
    workers += [threading.Thread(target=flood) for _ in range(connections)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    server.should_exit = True
    thread.join()
    per: dict[int, dict[str, Counter[str]]] = defaultdict(
        lambda: {"offered": Counter(), "admitted": Counter()}
    )
    for t, user, status in events:
        if 0 <= t < SECONDS:
            per[int(t)]["offered"][user] += 1
            per[int(t)]["admitted"][user] += status == 200
    windows = [
        {"t": s, "offered": dict(per[s]["offered"]), "admitted": dict(per[s]["admitted"])}
        for s in range(SECONDS)
    ]
    return summarise(f"HTTP under uvicorn, c on {connections} connections", windows)


def summarise(label: str, windows: list[dict[str, Any]]) -> dict[str, Any]:
    sent = {u: sum(w["offered"].get(u, 0) for w in windows) for u in ("a", "b", "c")}
    got = {u: sum(w["admitted"].get(u, 0) for w in windows) for u in ("a", "b", "c")}
    flood_windows = [w for w in windows if FLOOD_FROM <= w["t"] < FLOOD_TO]
    return {
        "label": label,
        "windows": windows,
        "share_admitted": {u: round(got[u] / sent[u], 4) for u in ("a", "b") if sent[u]},
        "flooder_offered_per_s": round(
            sum(w["offered"].get("c", 0) for w in flood_windows) / len(flood_windows), 1
        ),
        "flooder_admitted_per_s": round(
            sum(w["admitted"].get("c", 0) for w in flood_windows) / len(flood_windows), 1
        ),
        "flooder_admitted_per_s_after_first_window": round(
            sum(w["admitted"].get("c", 0) for w in flood_windows[1:])
            / max(1, len(flood_windows) - 1),
            1,
        ),
        "peak_admitted_per_window": max(sum(w["admitted"].values()) for w in windows),
        "capacity_per_window": 100,
    }


def show(result: dict[str, Any]) -> None:
    print(f"\n## {result['label']}\n")
    print("| t (s) | a sent/admitted | b sent/admitted | c sent/admitted | total admitted |")
    print("|---|---|---|---|---|")
    for w in result["windows"]:
        cells = [f"{w['offered'].get(u, 0)}/{w['admitted'].get(u, 0)}" for u in ("a", "b", "c")]
        print(f"| {w['t']} | " + " | ".join(cells) + f" | {sum(w['admitted'].values())} |")
    print()
    for key in (
        "share_admitted",
        "flooder_offered_per_s",
        "flooder_admitted_per_s",
        "flooder_admitted_per_s_after_first_window",
        "peak_admitted_per_window",
    ):
        print(f"- {key}: {result[key]}")


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        ts = [w["t"] for w in result["windows"]]
        bottom = [0] * len(ts)
        for user, colour in (("a", "tab:blue"), ("b", "tab:green"), ("c", "tab:red")):
            values = [w["admitted"].get(user, 0) for w in result["windows"]]
            ax.bar(ts, values, bottom=bottom, color=colour, label=f"{user} admitted")
            bottom = [x + y for x, y in zip(bottom, values, strict=True)]
        ax.axhline(100, color="black", lw=1, label="capacity")
        ax.axhline(80, color="grey", lw=1, ls="--", label="threshold")
        ax.axvspan(FLOOD_FROM - 0.5, FLOOD_TO - 0.5, color="red", alpha=0.07, label="c floods")
        ax.set_xlabel("second")
        ax.set_ylabel("SRs admitted in the window")
        ax.set_title(result["label"], fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mode", choices=("virtual", "http", "both"), default="both")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--plot", action="store_true", help="also write scenario_flood.png")
    args = parser.parse_args()
    results = []
    if args.mode in ("virtual", "both"):
        results.append(virtual())
    if args.mode in ("http", "both"):
        results.append(http())
    machine = {"cores": os.cpu_count(), "python": platform.python_version()}
    for result in results:
        show(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scenario_flood.json").write_text(
        json.dumps({"machine": machine, "runs": results}, indent=1)
    )
    if args.plot:
        plot(results, args.out / "scenario_flood.png")


if __name__ == "__main__":
    main()
