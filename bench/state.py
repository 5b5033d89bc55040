"""Gate state under many identities: memory per 100k identities, recomputation cost.

* ``memory``: 1,000 new identities a second on the virtual clock (each sends one request
  and is never seen again) for 300 s, the gate ticking each second: RSS and the number
  of Users the gate holds after 100k, 200k and 300k identities. Idle Users not named in
  the policy are forgotten after ``IDLE_FORGET`` seconds (60 s).
* ``recompute``: one control period's recomputation (:meth:`srtm.Gate.tick`) with 10,000
  active Users, each offering requests in the current window; and, for the
  :class:`srtm.aio.gate.AsyncGate`, the longest the event loop went without running a
  10 ms timer while such a tick ran (the work runs in a worker thread).

Usage: ``python bench/state.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import base_parser, header, machine, table, write_json


def rss() -> int:
    """Resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def memory(seconds: int) -> list[tuple[int, float, int]]:
    """(identities seen, RSS MB, Users held) every 100 s."""
    from srtm import Gate, Identity, TrafficPolicy

    gate = Gate(TrafficPolicy(capacity=2000, allocations={"a": 100}), background=False)
    rows = []
    for second in range(seconds):
        gate.tick(now=float(second))
        for k in range(1000):
            gate.decide(Identity(f"id-{second}-{k}", "4.1"), now=second + k / 1000)
        if (second + 1) % 100 == 0:
            rows.append(((second + 1) * 1000, rss() / 1e6, len(gate.pool("default").stats)))
    gate.close()
    return rows


def _load(gate: object, users: int, second: int) -> None:
    from srtm import Identity

    for u in range(users):
        gate.decide(Identity(f"u{u}", "4.1"), 3, now=second + u / users)  # type: ignore[attr-defined]


def recompute(users: int, rounds: int) -> tuple[list[float], list[float]]:
    """Sync tick times (ms) and the AsyncGate's longest loop stalls (ms) per tick."""
    from srtm import Gate, Identity, TrafficPolicy
    from srtm.aio.gate import AsyncGate

    policy = TrafficPolicy(capacity=users, allocations={"a": 1})
    gate = Gate(policy, background=False)
    ticks = []
    for second in range(rounds):
        _load(gate, users, second)
        started = time.perf_counter()
        gate.tick(now=second + 1.0)
        ticks.append((time.perf_counter() - started) * 1000)
    gate.close()

    async def stalls() -> list[float]:
        agate = AsyncGate(policy, background=False)
        worst: list[float] = []
        for second in range(rounds):
            for u in range(users):
                await agate.decide(Identity(f"u{u}", "4.1"), 3, now=second + u / users)
            gaps: list[float] = []
            done = asyncio.Event()

            async def beat(gaps: list[float], done: asyncio.Event) -> None:
                last = time.perf_counter()
                while not done.is_set():
                    await asyncio.sleep(0.01)
                    now = time.perf_counter()
                    gaps.append((now - last) * 1000 - 10)
                    last = now

            beater = asyncio.create_task(beat(gaps, done))
            await asyncio.sleep(0.02)
            await agate.tick(now=second + 1.0)
            done.set()
            await beater
            worst.append(max(gaps))
        await agate.close()
        return worst

    return ticks, asyncio.run(stalls())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import logging

    logging.getLogger("srtm").setLevel(logging.ERROR)
    args = base_parser(__doc__ or "").parse_args(argv)
    info = machine()
    header("gate state under many identities", info)
    rows = memory(100 if args.quick else 300)
    for seen, mb, held in rows:
        print(f"memory: {seen:>7,} identities seen: RSS {mb:6.1f} MB, Users held {held:,}")
    users = 2000 if args.quick else 10_000
    ticks, stalls = recompute(users, 2 if args.quick else 5)
    print(
        f"recompute, {users:,} active Users: sync tick median {statistics.median(ticks):.0f} ms "
        f"(max {max(ticks):.0f}); AsyncGate longest event-loop stall during a tick median "
        f"{statistics.median(stalls):.0f} ms (max {max(stalls):.0f})"
    )
    print(
        table(
            [[f"{s:,}", f"{m:.1f}", f"{h:,}"] for s, m, h in rows],
            ["identities seen", "RSS (MB)", "Users held"],
            title="memory under rotating identities (1,000 new a second)",
        )
    )
    print(
        table(
            [
                [
                    f"{users:,}",
                    f"{statistics.median(ticks):.0f}",
                    f"{max(ticks):.0f}",
                    f"{statistics.median(stalls):.0f}",
                    f"{max(stalls):.0f}",
                ]
            ],
            [
                "active Users",
                "sync tick median (ms)",
                "max (ms)",
                "AsyncGate loop stall median (ms)",
                "max (ms)",
            ],
            title="recomputation",
        )
    )
    result: dict[str, Any] = {
        "machine": info,
        "memory": [{"identities": s, "rss_mb": m, "users_held": h} for s, m, h in rows],
        "recompute": {"users": users, "tick_ms": ticks, "async_loop_stall_ms": stalls},
    }
    print(f"   wrote {write_json('state', result, args.out)}")
    return result


if __name__ == "__main__":
    main()
