"""HTTP throughput under uvicorn: the bare app against srtm, admitting and refusing.

Each variant is served by uvicorn in a process of its own (``python -m uvicorn
bench._apps:served --factory``, one worker unless said) on loopback, on two HTTP stacks:
``h11`` (pure-Python HTTP, asyncio loop) and ``httptools`` (httptools and uvloop, what
``uvicorn[standard]`` runs; skipped when they are not installed). Load comes from
``wrk`` (one thread, keep-alive connections, ``POST /sr``) or, where ``wrk`` is not
installed and always with ``--quick``, a small asyncio load generator sending the same
requests. Variants are interleaved round by round; figures are medians over rounds, and
each ratio against the bare app is taken within a round, on the same stack.

Variants, on each stack: ``bare`` (200 ok); ``bare + 2 fields`` (the bare app adding
two fixed header fields the size of srtm's RateLimit fields: what the HTTP layer
charges for them, without any decision); ``bare 429`` (a fixed refusal the size of
srtm's, its six fields and body: what the HTTP layer charges for a refusal); ``srtm
memory`` (traffic management inactive, every request admitted with its RateLimit
fields; 50 Users in turn); ``srtm flood`` (one identity on every connection against a
capacity of 100 SR/s: all but ~100 a second refused, 429). On httptools also ``srtm
redis`` and ``srtm redis, lease`` (a private redis-server unless ``--redis-url``), and
``srtm flood, 2 workers``. srtm trusts the loopback front end (``trusted_peers``).

The server's CPU time over each measured run (``/proc``, the uvicorn process and its
workers) gives the CPU cost per request. From the flood's cost per refusal comes the
number of workers (one core each) that absorb 30,000 SR/s from one identity; it is
measured with 1 and 2 workers here, where the load generator shares the same two cores,
and extrapolated from the CPU per refusal.

Usage: ``python bench/throughput.py [--quick] [--seconds S] [--rounds R] [--connections C]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
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
    from collections.abc import Callable, Iterator

WRK_SCRIPT = ROOT / "bench" / "wrk_users.lua"
#: The denial-of-service the seeds describe: SR/s from one identity.
FLOOD_RATE = 30_000
#: HTTP stacks: uvicorn's --http and --loop.
STACKS = {"h11": ("h11", "asyncio"), "httptools": ("httptools", "uvloop")}
#: The targets: srtm memory / bare on each stack, and flood refusals / bare requests.
ADMIT_GOAL = {"h11": 0.9, "httptools": 0.8}
REFUSE_GOAL = 0.8


def stacks_available() -> list[str]:
    """h11 always; httptools only where httptools and uvloop are installed."""
    found = ["h11"]
    if all(importlib.util.find_spec(m) for m in ("httptools", "uvloop")):
        found.append("httptools")
    return found


@contextlib.contextmanager
def serve(
    app: str,
    stack: str,
    *,
    storage: str = "memory://",
    lease: bool = False,
    workers: int = 1,
) -> Iterator[tuple[str, int]]:
    """Start uvicorn on ``bench._apps:served`` in a process of its own; yield (URL, pid)."""
    port = free_port()
    http, loop = STACKS[stack]
    cmd = [sys.executable, "-m", "uvicorn", "bench._apps:served", "--factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--http", http, "--loop", loop]
    cmd += ["--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    cmd += ["--lifespan", "on", "--ws", "none"]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        _apps.SERVED_APP: app,
        _apps.SERVED_STORAGE: storage,
        _apps.SERVED_LEASE: "1" if lease else "0",
    }
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
        if workers > 1:
            # every worker listens on the shared socket; wait until all have started
            while len(_descendants(proc.pid)) < workers and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)  # a worker process exists before it imports the app
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively (Linux /proc)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found.append(int(child))
                found += _descendants(int(child))
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of ``pid`` and its descendants (0.0 without /proc)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for p in [pid, *_descendants(pid)]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


# -- load generators ------------------------------------------------------------------------


def wrk_script(users: int) -> Path:
    """bench/wrk_users.lua, or a copy of it for the first ``users`` Users only."""
    if users == 50:
        return WRK_SCRIPT
    text = WRK_SCRIPT.read_text()
    loop = "for k = 0, 49 do"
    if loop not in text:
        raise RuntimeError(f"{WRK_SCRIPT} no longer has {loop!r}: update wrk_script")
    path = Path(tempfile.gettempdir()) / f"srtm_wrk_{users}_users.lua"
    path.write_text(text.replace(loop, f"for k = 0, {users - 1} do"))
    return path


def run_wrk(url: str, seconds: float, connections: int, users: int) -> dict[str, Any]:
    """One wrk run: requests/s, non-2xx answers and latency percentiles (microseconds)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    cmd += ["-s", str(wrk_script(users)), f"{url}/sr"]
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
        "non_2xx": errors["status"],
        "errors": sum(v for k, v in errors.items() if k != "status"),
    }


async def _python_load(
    host: str, port: int, seconds: float, connections: int, users: int
) -> dict[str, Any]:
    names = _apps.users(users)
    requests = [
        (
            f"POST /sr HTTP/1.1\r\nHost: {host}\r\nX-Service-User-ID: {u}\r\n"
            "X-DUIS-Version: 4.1\r\nContent-Type: application/xml\r\n"
            "Content-Length: 10\r\n\r\n<Request/>"
        ).encode()
        for u in names
    ]
    latencies: list[float] = []
    statuses: Counter[bytes] = Counter()
    stop = time.perf_counter() + seconds

    async def one(k: int) -> None:
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
                statuses[head[9:12]] += 1
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
        "non_2xx": sum(n for s, n in statuses.items() if not s.startswith(b"2")),
        "errors": 0,
    }


def run_python(url: str, seconds: float, connections: int, users: int) -> dict[str, Any]:
    """The fallback load generator: asyncio keep-alive connections, same requests as wrk."""
    host, port = url.removeprefix("http://").split(":")
    return asyncio.run(_python_load(host, int(port), seconds, connections, users))


# -- the benchmark --------------------------------------------------------------------------


class Variant:
    """One server set-up: which app, on which stack, with what load."""

    def __init__(
        self,
        app: str,
        stack: str,
        *,
        storage: str = "memory://",
        lease: bool = False,
        workers: int = 1,
        users: int = 50,
    ) -> None:
        self.app, self.stack, self.storage, self.lease = app, stack, storage, lease
        self.workers, self.users = workers, users


def measure(
    variant: Variant,
    load: Callable[[str, float, int, int], dict[str, Any]],
    seconds: float,
    connections: int,
    warm: bool,
) -> dict[str, Any]:
    """Serve ``variant``, warm it up, load it for ``seconds``; add the server's CPU."""
    if variant.storage != "memory://":
        flush_redis(variant.storage)
    with serve(
        variant.app,
        variant.stack,
        storage=variant.storage,
        lease=variant.lease,
        workers=variant.workers,
    ) as (url, pid):
        if warm:
            load(url, min(1.0, seconds), connections, variant.users)
        cpu = cpu_seconds(pid)
        got = load(url, seconds, connections, variant.users)
        got["server_cpu_s"] = cpu_seconds(pid) - cpu
    got["server_cpu_us_per_request"] = (
        round(got["server_cpu_s"] / got["requests"] * 1e6, 1) if got["requests"] else None
    )
    return got


def summarise(
    runs: dict[str, list[dict[str, Any]]], variants: dict[str, Variant]
) -> dict[str, Any]:
    """Per variant: medians over rounds, and the per-round ratio to its stack's bare app."""
    figures: dict[str, Any] = {}
    for name, got in runs.items():
        bare = runs[f"{variants[name].stack}: bare"]
        ratios = [g["rps"] / b["rps"] for g, b in zip(got, bare, strict=True)]
        cpu = [g["server_cpu_us_per_request"] for g in got if g["server_cpu_us_per_request"]]
        figures[name] = {
            "rps": round(median([g["rps"] for g in got]), 1),
            "rps_vs_bare": round(median(ratios), 3),
            "rps_vs_bare_rounds": [round(r, 3) for r in ratios],
            "refused_share": round(
                median([g["non_2xx"] / g["requests"] if g["requests"] else 0.0 for g in got]), 4
            ),
            "server_cpu_us_per_request": round(median(cpu), 1) if cpu else None,
            "latency_us": {
                k: round(median([g["latency_us"][k] for g in got]), 1)
                for k in ("p50", "p90", "p99", "p999", "max")
            },
            "errors": sum(g["errors"] for g in got),
            "runs": got,
        }
    return figures


def workers_for_flood(figures: dict[str, Any]) -> dict[str, Any] | None:
    """How many workers absorb FLOOD_RATE SR/s from one identity: measured and extrapolated."""
    one = figures.get("httptools: srtm flood") or figures.get("h11: srtm flood")
    if one is None:
        return None
    stack = "httptools" if "httptools: srtm flood" in figures else "h11"
    two = figures.get(f"{stack}: srtm flood, 2 workers")
    cpu = one["server_cpu_us_per_request"]
    out: dict[str, Any] = {
        "stack": stack,
        "rate": FLOOD_RATE,
        "one_worker_rps": one["rps"],
        "two_workers_rps": two["rps"] if two else None,
        "server_cpu_us_per_refusal": cpu,
        "nproc": os.cpu_count(),
    }
    # One worker is one core at best: FLOOD_RATE SR/s need FLOOD_RATE * CPU-per-refusal
    # cores of server CPU, whatever this machine's load generator takes from them.
    out["workers_needed_from_cpu"] = math.ceil(FLOOD_RATE * cpu / 1e6) if cpu else None
    out["measured_absorbs"] = {
        "1 worker": one["rps"] >= FLOOD_RATE,
        "2 workers": bool(two and two["rps"] >= FLOOD_RATE),
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--seconds", type=float, default=None, help="per run (default 5)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument(
        "--loadgen", choices=("auto", "wrk", "python"), default="auto", help="load generator"
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (0.3 if args.quick else 5.0)
    rounds = args.rounds or (1 if args.quick else 5)
    loadgen = args.loadgen
    if loadgen == "auto":
        # wrk runs whole seconds; a --quick run is shorter: the Python generator
        loadgen = "wrk" if shutil.which("wrk") and not args.quick else "python"
    load = run_wrk if loadgen == "wrk" else run_python
    info = machine()
    header("HTTP throughput under uvicorn: admitting and refusing", info)
    stacks = stacks_available()
    print(
        f"   load: {loadgen}, {args.connections} connections, {seconds:g} s a run, "
        f"{rounds} rounds; stacks: {', '.join(stacks)}"
    )
    result: dict[str, Any] = {
        "machine": info,
        "loadgen": loadgen,
        "connections": args.connections,
        "seconds": seconds,
        "rounds": rounds,
        "stacks": stacks,
    }
    runs: dict[str, list[dict[str, Any]]] = {}
    redis_cm: Any = contextlib.nullcontext("") if args.no_redis else private_redis(args.redis_url)
    with redis_cm as redis_url:
        variants: dict[str, Variant] = {}
        for stack in stacks:
            variants[f"{stack}: bare"] = Variant("bare", stack)
            if not args.quick:
                variants[f"{stack}: bare + 2 fields"] = Variant("bare-fields", stack)
                variants[f"{stack}: bare 429"] = Variant("bare-refusal", stack, users=1)
            variants[f"{stack}: srtm memory"] = Variant("srtm", stack)
            variants[f"{stack}: srtm flood"] = Variant("srtm-flood", stack, users=1)
        last = stacks[-1]
        if not args.quick:
            variants[f"{last}: srtm flood, 2 workers"] = Variant(
                "srtm-flood", last, users=1, workers=2
            )
        if redis_url:
            if not args.quick:
                variants[f"{last}: srtm redis"] = Variant("srtm", last, storage=redis_url)
            variants[f"{last}: srtm redis, lease"] = Variant(
                "srtm", last, storage=redis_url, lease=True
            )
        for r in range(rounds):
            for name, variant in variants.items():
                got = measure(variant, load, seconds, args.connections, warm=not args.quick)
                runs.setdefault(name, []).append(got)
            print(f"   round {r + 1}/{rounds} done")
    figures = summarise(runs, variants)
    rows = [
        [
            name,
            f"{f['rps']:.0f}",
            f"{f['rps_vs_bare']:.3f}",
            f"{f['refused_share']:.3f}",
            f"{f['server_cpu_us_per_request']}",
            *(f"{f['latency_us'][k] / 1000:.2f}" for k in ("p50", "p99")),
            f["errors"],
        ]
        for name, f in figures.items()
    ]
    print(
        table(
            rows,
            ["variant", "req/s", "vs bare", "refused", "CPU us/req", "p50 ms", "p99 ms", "errors"],
            title="uvicorn over loopback (medians of rounds)",
        )
    )
    checks: list[dict[str, Any]] = []
    for stack in stacks:
        admitted = figures[f"{stack}: srtm memory"]["rps_vs_bare"]
        checks.append(
            {
                "target": f"{stack}: srtm memory throughput >= {ADMIT_GOAL[stack]} "
                "of the bare app's",
                "measured": admitted,
                "goal": ADMIT_GOAL[stack],
                "met": admitted >= ADMIT_GOAL[stack],
            }
        )
        refusing = figures[f"{stack}: srtm flood"]["rps_vs_bare"]
        checks.append(
            {
                "target": f"{stack}: one worker's refusals/s under a one-identity flood "
                f">= {REFUSE_GOAL} of the bare app's requests/s",
                "measured": refusing,
                "goal": REFUSE_GOAL,
                "met": refusing >= REFUSE_GOAL,
            }
        )
    flood = workers_for_flood(figures)
    if flood is not None:
        checks.append(
            {
                "target": f"{flood['stack']}: one worker absorbs {FLOOD_RATE:,} SR/s from one "
                "identity (refusals/s measured)",
                "measured": flood["one_worker_rps"],
                "goal": FLOOD_RATE,
                "met": flood["one_worker_rps"] >= FLOOD_RATE,
            }
        )
        print(
            f"   flood from one identity ({flood['stack']}): 1 worker {flood['one_worker_rps']:.0f}"
            f" refusals/s, 2 workers {flood['two_workers_rps'] or '-'} on {flood['nproc']} CPUs"
            f" shared with the load generator; {flood['server_cpu_us_per_refusal']} us of server"
            f" CPU per refusal -> {flood['workers_needed_from_cpu']} worker(s) of one core each"
            f" absorb {FLOOD_RATE:,} SR/s"
        )
    for row in checks:
        verdict = "met   " if row["met"] else "MISSED"
        print(f"   {verdict} {row['target']}: {row['measured']}")
    result["variants"] = figures
    result["flood"] = flood
    result["targets"] = checks
    path = write_json("throughput", result, args.out)
    print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
