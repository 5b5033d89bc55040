"""HTTP throughput and latency under uvicorn: the bare app against the same app behind srtm.

Each variant is served by its own uvicorn process (one worker, ``bench/_serve.py``) on
loopback and loaded by ``wrk`` (one thread, keep-alive connections, ``POST /sr`` as
50 Service Users in turn: ``bench/wrk_users.lua``), or, where ``wrk`` is not installed,
by a small asyncio load generator with the same requests. Variants are interleaved
round by round; figures are medians over rounds, and the throughput ratio against the
bare app is taken within each round.

Variants: ``bare``; ``bare + 2 fields`` (the bare app adding two fixed header fields
the size of srtm's RateLimit fields: what the server's HTTP layer, h11 unless
httptools is installed, charges for them, without any decision); ``srtm memory``;
``srtm redis``; ``srtm redis, lease`` (a private redis-server unless ``--redis-url``).
srtm runs with traffic management inactive, the real clock and its background
recomputation, as in production: every request is admitted and carries the RateLimit
fields.

On a 2-CPU machine the load generator, the server and Redis share two cores, so the
absolute figures are modest; the ratios are the point.

Usage: ``python bench/throughput.py [--quick] [--seconds S] [--rounds R] [--connections C]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _apps
from bench._common import (
    ROOT,
    base_parser,
    flush_redis,
    free_port,
    header,
    machine,
    median,
    private_redis,
    table,
    write_json,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

WRK_SCRIPT = ROOT / "bench" / "wrk_users.lua"


@contextlib.contextmanager
def serve(app: str, storage: str = "memory://", lease: bool = False) -> Iterator[str]:
    """Start ``bench/_serve.py`` in a process of its own; yield its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "bench._serve", "--app", app, "--port", str(port)]
    cmd += ["--storage", storage] + (["--lease"] if lease else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the {app} server did not start") from None
                time.sleep(0.05)  # polling a port for readiness: no event to wait on
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# -- load generators ------------------------------------------------------------------------


def run_wrk(url: str, seconds: float, connections: int) -> dict[str, Any]:
    """One wrk run: requests/s and latency percentiles (microseconds)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    cmd += ["-s", str(WRK_SCRIPT), f"{url}/sr"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{out}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    errors = data["errors"]
    return {
        "requests": data["requests"],
        "rps": data["requests"] / (data["duration_us"] / 1e6),
        "latency_us": data["latency_us"],
        "non_2xx_or_errors": sum(errors.values()),
    }


async def _python_load(host: str, port: int, seconds: float, connections: int) -> dict[str, Any]:
    names = _apps.users(50)
    requests = [
        (
            f"POST /sr HTTP/1.1\r\nHost: {host}\r\nX-Service-User-ID: {u}\r\n"
            "X-DUIS-Version: 4.1\r\nContent-Type: application/xml\r\n"
            "Content-Length: 10\r\n\r\n<Request/>"
        ).encode()
        for u in names
    ]
    latencies: list[float] = []
    bad = 0
    stop = time.perf_counter() + seconds

    async def one(k: int) -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection(host, port)
        i = k
        try:
            while time.perf_counter() < stop:
                start = time.perf_counter()
                writer.write(requests[i % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                if not head.startswith(b"HTTP/1.1 200"):
                    bad += 1
                i += 1
        finally:
            writer.close()
            await writer.wait_closed()

    began = time.perf_counter()
    await asyncio.gather(*(one(k) for k in range(connections)))
    elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(p: float) -> int:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6)

    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "latency_us": {
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
            "p999": pct(99.9),
            "max": round(latencies[-1] * 1e6),
            "mean": round(statistics.fmean(latencies) * 1e6, 1),
        },
        "non_2xx_or_errors": bad,
    }


def run_python(url: str, seconds: float, connections: int) -> dict[str, Any]:
    """The fallback load generator: asyncio keep-alive connections, same requests as wrk."""
    host, port = url.removeprefix("http://").split(":")
    return asyncio.run(_python_load(host, int(port), seconds, connections))


# -- the benchmark --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--seconds", type=float, default=None, help="per run (default 5)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 7)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument(
        "--loadgen", choices=("auto", "wrk", "python"), default="auto", help="load generator"
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (0.3 if args.quick else 5.0)
    rounds = args.rounds or (1 if args.quick else 7)
    loadgen = args.loadgen
    if loadgen == "auto":
        # wrk runs whole seconds; a --quick run is shorter: the Python generator
        loadgen = "wrk" if shutil.which("wrk") and not args.quick else "python"
    load = run_wrk if loadgen == "wrk" else run_python
    info = machine()
    header("HTTP throughput and latency under uvicorn", info)
    print(
        f"   load: {loadgen}, {args.connections} connections, {seconds:g} s a run, {rounds} rounds"
    )
    result: dict[str, Any] = {
        "machine": info,
        "loadgen": loadgen,
        "connections": args.connections,
        "seconds": seconds,
        "rounds": rounds,
    }
    runs: dict[str, list[dict[str, Any]]] = {}
    redis_cm: Any = contextlib.nullcontext("") if args.no_redis else private_redis(args.redis_url)
    with redis_cm as redis_url:
        variants: dict[str, tuple[str, str, bool]] = {
            "bare": ("bare", "memory://", False),
            "srtm memory": ("srtm", "memory://", False),
        }
        if not args.quick:
            # what uvicorn's HTTP layer charges for two more response header fields
            variants["bare + 2 fields"] = ("bare-fields", "memory://", False)
        if redis_url:
            if not args.quick:
                variants["srtm redis"] = ("srtm", redis_url, False)
            variants["srtm redis, lease"] = ("srtm", redis_url, True)
        for r in range(rounds):
            for name, (app, storage, lease) in variants.items():
                if storage != "memory://":
                    flush_redis(storage)
                with serve(app, storage, lease) as url:
                    if not args.quick:
                        load(url, min(1.0, seconds), args.connections)  # warm up
                    runs.setdefault(name, []).append(load(url, seconds, args.connections))
            print(f"   round {r + 1}/{rounds} done")
    figures: dict[str, Any] = {}
    bare = runs["bare"]
    for name, got in runs.items():
        figures[name] = {
            "rps": round(median([g["rps"] for g in got]), 1),
            "rps_vs_bare": round(
                median([g["rps"] / b["rps"] for g, b in zip(got, bare, strict=True)]), 3
            ),
            "rps_vs_bare_rounds": [
                round(g["rps"] / b["rps"], 3) for g, b in zip(got, bare, strict=True)
            ],
            "latency_us": {
                k: round(median([g["latency_us"][k] for g in got]), 1)
                for k in ("p50", "p90", "p99", "p999", "max")
            },
            "non_2xx_or_errors": sum(g["non_2xx_or_errors"] for g in got),
            "runs": got,
        }
    rows = [
        [
            name,
            f"{f['rps']:.0f}",
            f"{f['rps_vs_bare']:.3f}",
            *(f"{f['latency_us'][k] / 1000:.2f}" for k in ("p50", "p90", "p99", "p999")),
            f["non_2xx_or_errors"],
        ]
        for name, f in figures.items()
    ]
    print(
        table(
            rows,
            ["variant", "req/s", "vs bare", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "errors"],
        )
    )
    target = figures["srtm memory"]["rps_vs_bare"]
    checks = [
        {
            "target": "srtm memory throughput >= 0.9 of the bare app's",
            "measured": target,
            "goal": 0.9,
            "met": target >= 0.9,
        }
    ]
    print(f"   {'met   ' if checks[0]['met'] else 'MISSED'} {checks[0]['target']}: {target:.3f}")
    result["variants"] = figures
    result["targets"] = checks
    path = write_json("throughput", result, args.out)
    print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
