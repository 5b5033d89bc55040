"""What every benchmark shares: the machine, a private redis-server, rounds, JSON out.

Figures are medians over repeated rounds, and every comparison is a ratio of figures
measured in the same run, variants interleaved round by round, so that a noisy machine
shifts them all alike.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

if str(ROOT) not in sys.path:  # `python bench/x.py` from anywhere imports srtm from here
    sys.path.insert(0, str(ROOT))


def machine() -> dict[str, Any]:
    """The machine the figures come from: CPUs, CPU model, Python, key packages."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    from importlib.metadata import PackageNotFoundError, version

    for name in (
        "limits",
        "redis",
        "coredis",
        "slowapi",
        "flask-limiter",
        "flask",
        "starlette",
        "uvicorn",
        "httpx",
    ):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    redis_server = shutil.which("redis-server")
    if redis_server:
        out = subprocess.run([redis_server, "--version"], capture_output=True, text=True).stdout
        versions["redis-server"] = next(
            (p.split("=", 1)[1] for p in out.split() if p.startswith("v=")), out.strip()
        )
    return {
        "nproc": os.cpu_count(),
        # What else the machine was doing: the 1, 5 and 15 minute load averages when the
        # script started (figures taken at a load near nproc share the CPUs with it).
        "load": [round(x, 2) for x in os.getloadavg()],
        "cpu": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": versions,
    }


def describe(info: Mapping[str, Any]) -> str:
    """One line naming the machine."""
    return f"{info['nproc']} CPUs, {info['cpu']}, Python {info['python']} ({info['platform']})"


# -- a private redis-server ----------------------------------------------------------------


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def private_redis(url: str | None = None) -> Iterator[str]:
    """A Redis URL: ``url`` if given, else a redis-server of our own on a free port.

    The private server keeps no snapshot and no log on disk, and is killed on exit.
    """
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on the PATH: install it or pass --redis-url")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="srtm-bench-redis-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", workdir]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"redis-server did not start on port {port}")
            time.sleep(0.02)  # polling a socket for readiness: there is no event to wait on
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def flush_redis(url: str) -> None:
    """Empty every database of the Redis server behind ``url``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


# -- rounds and medians ---------------------------------------------------------------------


def interleaved(
    variants: Mapping[str, Callable[[int], float]],
    *,
    n: int | Mapping[str, int],
    rounds: int,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Per-request seconds of each variant, one sample a round, variants interleaved.

    ``variants[name](k)`` serves ``k`` requests and returns the seconds it took. The order
    rotates each round so no variant always runs straight after the same neighbour.
    """
    names = list(variants)
    sizes = {name: n if isinstance(n, int) else n[name] for name in names}
    for name in names:
        for _ in range(warmup):
            variants[name](max(sizes[name] // 4, 1))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            samples[name].append(variants[name](sizes[name]) / sizes[name])
    return samples


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio_median(top: Sequence[float], bottom: Sequence[float]) -> float:
    """Median over rounds of the per-round ratio ``top / bottom``."""
    return statistics.median(t / b if b else float("inf") for t, b in zip(top, bottom, strict=True))


def added(samples: Sequence[float], base: Sequence[float]) -> list[float]:
    """Per-round added cost ``sample - base``."""
    return [s - b for s, b in zip(samples, base, strict=True)]


def us(seconds: float) -> str:
    """Seconds as microseconds, for tables."""
    return f"{seconds * 1e6:8.2f}"


# -- output ---------------------------------------------------------------------------------


# Every table a script prints since its last write_json, so that its JSON carries the very
# cells it printed and bench/report.py can render docs/benchmarks.md from them.
_TABLES: list[dict[str, Any]] = []


def write_json(name: str, payload: Mapping[str, Any], out: Path | None = None) -> Path:
    """Write ``bench/results/<name>.json`` (or into ``out``) and return its path.

    The tables printed since the last call go into it under ``tables``.
    """
    folder = out or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    document = dict(payload)
    if _TABLES:
        document.setdefault("tables", list(_TABLES))
        _TABLES.clear()
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


def table(
    rows: Sequence[Sequence[object]], header: Sequence[str], *, title: str | None = None
) -> str:
    """A plain fixed-width table, also recorded for the script's JSON under ``title``."""
    _TABLES.append(
        {
            "title": title or f"table {len(_TABLES) + 1}",
            "header": [str(c) for c in header],
            "rows": [[str(c).strip() for c in row] for row in rows],
        }
    )
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for k, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def base_parser(description: str) -> argparse.ArgumentParser:
    """Options every script takes: ``--quick`` (tiny, for the smoke test), output, Redis."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the script runs, figures are noise"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the JSON (bench/results)"
    )
    parser.add_argument(
        "--redis-url", default=None, help="use this Redis instead of a private redis-server"
    )
    return parser


def header(title: str, info: Mapping[str, Any]) -> None:
    print(f"== {title}")
    print(f"   machine: {describe(info)}")
