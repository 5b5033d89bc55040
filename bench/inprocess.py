"""Per-request cost in process: srtm's middleware against the peers and the floor.

Each variant's app is called directly (an ASGI scope, or a WSGI environ), with no HTTP
client or server in the loop, for 50 Service Users in turn. Every variant limits each
User with the same kind of limit, a fixed window of one second, set high enough that
all requests are admitted, except in the ``refused`` scenario where one User is
already over its limit and every request is refused.

Variants (see bench/_apps.py): ``bare`` (the cheapest ASGI/WSGI app), ``floor`` (the
bare app behind one raw ``limits`` FixedWindowRateLimiter hit: the least any
``limits``-based middleware does), ``starlette`` and ``slowapi`` (its ``@limit``
decorator; ``slowapi-mw`` its pure-ASGI middleware), ``flask`` and ``flask-limiter``,
and srtm's ``ASGITrafficManager``/``WSGITrafficManager`` over the bare app, with
traffic management inactive and active, and on Redis with and without leases. A
peer's added cost is measured against its own framework (slowapi against the same
Starlette app, Flask-Limiter against the same Flask app); srtm's against the bare app.

srtm runs on a virtual clock (each decision moves it by ``1 / rate``) so the offered
rate, and with it traffic management and lease sizes, is the same on every machine;
the governor is recomputed every control period of that clock, inside the timed loop.

Usage: ``python bench/inprocess.py [--quick] [--rounds N] [--no-redis] [--redis-url URL]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _apps
from bench._common import (
    added,
    base_parser,
    flush_redis,
    header,
    interleaved,
    machine,
    median,
    private_redis,
    ratio_median,
    table,
    write_json,
)
from srtm import Identity, TrafficPolicy
from srtm.aio.gate import AsyncGate
from srtm.gate import Gate
from srtm.lease import LeasePolicy
from srtm.middleware import ASGITrafficManager, WSGITrafficManager

if TYPE_CHECKING:
    from collections.abc import Callable

USERS = 50
#: Offered rate on srtm's virtual clock (SR/s, all Users together).
RATE = 20_000.0
START = 1_700_000_000.0  # the virtual clock's first reading
LEASE = LeasePolicy()
#: The issue's in-process targets: srtm's added cost against a raw limits hit's, and
#: against the peer's.
FLOOR_GOAL = 1.5
#: srtm trusts the front end on loopback, where the drivers' requests come from.
TRUST = ["127.0.0.1"]
PEER_GOAL = 0.2


# -- srtm policies for each state -----------------------------------------------------------


def inactive_policy(storage: str, lease: LeasePolicy | None = None) -> TrafficPolicy:
    """Capacity far above the offered rate: traffic management never engages."""
    return TrafficPolicy(capacity=100 * RATE, storage=storage, lease=lease)


def active_policy(
    names: list[str], storage: str, lease: LeasePolicy | None = None
) -> TrafficPolicy:
    """Budget 20,000 SR/s shared by 50 Users of 300 SR/s each; see :func:`engage`."""
    allocations = dict.fromkeys(names, 300.0)
    return TrafficPolicy(
        capacity=RATE * 1.25, threshold=0.8, allocations=allocations, storage=storage, lease=lease
    )


def refused_policy(storage: str, lease: LeasePolicy | None = None) -> TrafficPolicy:
    """Capacity 100 SR/s against one User's 20,000: it is over its limit at once."""
    return TrafficPolicy(capacity=100, storage=storage, lease=lease)


class Srtm:
    """One srtm variant: a middleware (or a bare gate) on its own virtual clock."""

    def __init__(self, policy: TrafficPolicy, *, rate: float = RATE) -> None:
        self.policy = policy
        self.clock = _apps.StepClock(START, 1.0 / rate)
        period = policy.control_period or policy.window
        self.every = max(1, round(period * rate))

    def retime(self, rate: float) -> None:
        self.clock.step = 1.0 / rate
        period = self.policy.control_period or self.policy.window
        self.every = max(1, round(period * rate))


#: Requests per decision while engaging: setup, not measured, so it may go in batches
#: (Redis keys expire on real time, so the virtual second must not last too long).
#: ``--quick`` raises it to engage in a few hundred decisions.
BATCH = 10


def engage_sync(gate: Gate, srtm: Srtm, names: list[str]) -> None:
    """Drive a gate over the threshold (22,000 SR/s for 1 s), then settle at 19,000 for 1 s.

    19,000 SR/s is 0.95 of the budget: above the release threshold (0.9), so traffic
    management stays on, and every User's fair share (400 SR/s) covers its 380 SR/s.
    """
    ids = [Identity(u, "4.1") for u in names]
    for rate, seconds in ((RATE * 1.1, 1.0), (RATE * 0.95, 1.0)):
        srtm.retime(rate / BATCH)
        for i in range(round(rate / BATCH * seconds)):
            if i % srtm.every == 0:
                gate.tick()
            gate.decide(ids[i % len(ids)], BATCH)
    srtm.retime(RATE * 0.95)
    assert gate.pool("default").governor.active, "traffic management did not engage"


async def engage_async(gate: AsyncGate, srtm: Srtm, names: list[str]) -> None:
    """The async twin of :func:`engage_sync`."""
    ids = [Identity(u, "4.1") for u in names]
    for rate, seconds in ((RATE * 1.1, 1.0), (RATE * 0.95, 1.0)):
        srtm.retime(rate / BATCH)
        for i in range(round(rate / BATCH * seconds)):
            if i % srtm.every == 0:
                await gate.tick()
            await gate.decide(ids[i % len(ids)], BATCH)
    srtm.retime(RATE * 0.95)
    assert gate.pool("default").governor.active, "traffic management did not engage"


# -- building the variants ------------------------------------------------------------------


class Bench:
    """Variants of one scenario, their drivers, and what to close afterwards."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dbs = 0
        self.variants: dict[str, Callable[[int], float]] = {}
        self.drivers: dict[str, _apps.AsgiDriver | _apps.WsgiDriver] = {}
        self.kind: dict[str, str] = {}
        self.gates: dict[str, Any] = {}
        self.closers: list[Callable[[], Any]] = []

    def own(self, policy: TrafficPolicy) -> TrafficPolicy:
        """The policy on a Redis database of its own, so srtm variants share no counters."""
        if policy.scheme == "memory":
            return policy
        self.dbs += 1
        if self.dbs > 15:
            raise RuntimeError("more srtm variants than Redis databases")
        return dataclasses.replace(policy, storage=f"{policy.storage.rstrip('/')}/{self.dbs}")

    def asgi(self, name: str, driver: _apps.AsgiDriver) -> None:
        loop = self.loop
        self.drivers[name] = driver
        self.kind[name] = "asgi"
        self.variants[name] = lambda n: loop.run_until_complete(driver.run(n))

    def wsgi(self, name: str, driver: _apps.WsgiDriver) -> None:
        self.drivers[name] = driver
        self.kind[name] = "wsgi"
        self.variants[name] = driver.run

    def srtm_asgi(
        self, name: str, policy: TrafficPolicy, names: list[str], *, active: bool = False
    ) -> ASGITrafficManager:
        policy = self.own(policy)
        srtm = Srtm(policy)

        async def build() -> ASGITrafficManager:
            app = ASGITrafficManager(
                _apps.bare_asgi, policy, clock=srtm.clock, background=False, trusted_peers=TRUST
            )
            if active:
                await engage_async(app.gate, srtm, names)
            return app

        app = self.loop.run_until_complete(build())
        driver = _apps.AsgiDriver(app, names, every=srtm.every, tick=app.gate.tick)
        self.asgi(name, driver)
        self.gates[name] = app.gate
        self.closers.append(lambda: self.loop.run_until_complete(app.aclose()))
        return app

    def srtm_wsgi(
        self, name: str, policy: TrafficPolicy, names: list[str], *, active: bool = False
    ) -> WSGITrafficManager:
        policy = self.own(policy)
        srtm = Srtm(policy)
        app = WSGITrafficManager(
            _apps.bare_wsgi, policy, clock=srtm.clock, background=False, trusted_peers=TRUST
        )
        if active:
            engage_sync(app.gate, srtm, names)
        driver = _apps.WsgiDriver(app, names, every=srtm.every, tick=app.gate.tick)
        self.wsgi(name, driver)
        self.gates[name] = app.gate
        self.closers.append(app.close)
        return app

    def gate_only_asgi(self, name: str, policy: TrafficPolicy, names: list[str]) -> None:
        """srtm's async decision alone: the gate, without the HTTP adapter."""
        policy = self.own(policy)
        srtm = Srtm(policy)
        gate = AsyncGate(policy, clock=srtm.clock, background=False)
        ids = [Identity(u, "4.1") for u in names]
        every = srtm.every
        state = {"served": 0}

        async def run(n: int) -> float:
            served = state["served"]
            start = time.perf_counter()
            for i in range(served, served + n):
                if i % every == 0:
                    await gate.tick()
                await gate.decide(ids[i % len(ids)])
            elapsed = time.perf_counter() - start
            state["served"] = served + n
            return elapsed

        self.kind[name] = "asgi"
        self.variants[name] = lambda n: self.loop.run_until_complete(run(n))
        self.closers.append(lambda: self.loop.run_until_complete(gate.close()))

    def adapter_only_asgi(self, name: str, policy: TrafficPolicy, names: list[str]) -> None:
        """srtm's ASGI adapter with a gate that answers at once: the adapter's own cost."""

        async def build() -> ASGITrafficManager:
            app = ASGITrafficManager(_apps.bare_asgi, policy, background=False)
            fixed = await app.gate.decide(Identity(names[0], "4.1"), now=START)

            async def decide(identity: Identity, n: int = 1, *, now: float | None = None) -> Any:
                return fixed

            app.gate.decide = decide  # type: ignore[method-assign]
            return app

        app = self.loop.run_until_complete(build())
        self.asgi(name, _apps.AsgiDriver(app, names))
        self.closers.append(lambda: self.loop.run_until_complete(app.aclose()))

    def adapter_only_wsgi(self, name: str, policy: TrafficPolicy, names: list[str]) -> None:
        """srtm's WSGI adapter with a gate that answers at once: the adapter's own cost."""
        app = WSGITrafficManager(_apps.bare_wsgi, policy, background=False)
        fixed = app.gate.decide(Identity(names[0], "4.1"), now=START)

        def decide(identity: Identity, n: int = 1, *, now: float | None = None) -> Any:
            return fixed

        app.gate.decide = decide  # type: ignore[method-assign]
        self.wsgi(name, _apps.WsgiDriver(app, names))
        self.closers.append(app.close)

    def gate_only_wsgi(self, name: str, policy: TrafficPolicy, names: list[str]) -> None:
        """srtm's sync decision alone."""
        policy = self.own(policy)
        srtm = Srtm(policy)
        gate = Gate(policy, clock=srtm.clock, background=False)
        ids = [Identity(u, "4.1") for u in names]
        every = srtm.every
        state = {"served": 0}

        def run(n: int) -> float:
            served = state["served"]
            start = time.perf_counter()
            for i in range(served, served + n):
                if i % every == 0:
                    gate.tick()
                gate.decide(ids[i % len(ids)])
            elapsed = time.perf_counter() - start
            state["served"] = served + n
            return elapsed

        self.kind[name] = "wsgi"
        self.variants[name] = run
        self.closers.append(gate.close)

    def close(self) -> None:
        for closer in self.closers:
            with contextlib.suppress(Exception):
                closer()


def admitted_scenario(
    loop: asyncio.AbstractEventLoop, storage: str, names: list[str], *, breakdown: bool
) -> Bench:
    """Every request admitted: peers with a high limit; srtm with TM off and on."""
    b = Bench(loop)
    redis = storage != "memory://"
    b.asgi("asgi bare", _apps.AsgiDriver(_apps.bare_asgi, names))
    b.asgi("asgi floor", _apps.AsgiDriver(_apps.floor_asgi(storage), names))
    b.asgi("starlette", _apps.AsgiDriver(_apps.starlette_app(), names))
    if _apps.installed("slowapi"):
        b.asgi("slowapi", _apps.AsgiDriver(_apps.slowapi_app(storage), names))
        b.asgi("slowapi-mw", _apps.AsgiDriver(_apps.slowapi_asgi_app(storage), names))
    b.srtm_asgi("srtm asgi", inactive_policy(storage), names)
    b.srtm_asgi("srtm asgi, TM active", active_policy(names, storage), names, active=True)
    if redis:
        coredis = dataclasses.replace(
            inactive_policy(storage), storage_options={"implementation": "coredis"}
        )
        b.srtm_asgi("srtm asgi, coredis", coredis, names)
        b.srtm_asgi("srtm asgi, lease", inactive_policy(storage, LEASE), names)
        b.srtm_asgi(
            "srtm asgi, lease, TM active", active_policy(names, storage, LEASE), names, active=True
        )
    if breakdown:
        b.gate_only_asgi("srtm AsyncGate.decide alone", inactive_policy(storage), names)
        b.adapter_only_asgi("srtm ASGI adapter alone", inactive_policy("memory://"), names)
    b.wsgi("wsgi bare", _apps.WsgiDriver(_apps.bare_wsgi, names))
    b.wsgi("wsgi floor", _apps.WsgiDriver(_apps.floor_wsgi(storage), names))
    b.wsgi("flask", _apps.WsgiDriver(_apps.flask_app(), names))
    if _apps.installed("flask-limiter"):
        b.wsgi("flask-limiter", _apps.WsgiDriver(_apps.flask_limiter_app(storage), names))
    b.srtm_wsgi("srtm wsgi", inactive_policy(storage), names)
    b.srtm_wsgi("srtm wsgi, TM active", active_policy(names, storage), names, active=True)
    if redis:
        b.srtm_wsgi("srtm wsgi, lease", inactive_policy(storage, LEASE), names)
        b.srtm_wsgi(
            "srtm wsgi, lease, TM active", active_policy(names, storage, LEASE), names, active=True
        )
    if breakdown:
        b.gate_only_wsgi("srtm Gate.decide alone", inactive_policy(storage), names)
        b.adapter_only_wsgi("srtm WSGI adapter alone", inactive_policy("memory://"), names)
    return b


def refused_scenario(loop: asyncio.AbstractEventLoop, storage: str, flooder: list[str]) -> Bench:
    """One User already over its limit: every request refused (429)."""
    b = Bench(loop)
    b.asgi("asgi bare", _apps.AsgiDriver(_apps.bare_asgi, flooder))
    b.asgi("asgi floor", _apps.AsgiDriver(_apps.floor_asgi(storage, amount=1), flooder))
    b.asgi("starlette", _apps.AsgiDriver(_apps.starlette_app(), flooder))
    if _apps.installed("slowapi"):
        b.asgi("slowapi", _apps.AsgiDriver(_apps.slowapi_app(storage, amount=1), flooder))
    b.srtm_asgi("srtm asgi", refused_policy(storage), flooder)
    b.wsgi("wsgi bare", _apps.WsgiDriver(_apps.bare_wsgi, flooder))
    b.wsgi("wsgi floor", _apps.WsgiDriver(_apps.floor_wsgi(storage, amount=1), flooder))
    b.wsgi("flask", _apps.WsgiDriver(_apps.flask_app(), flooder))
    if _apps.installed("flask-limiter"):
        limiter = _apps.flask_limiter_app(storage, amount=1)
        b.wsgi("flask-limiter", _apps.WsgiDriver(limiter, flooder))
    b.srtm_wsgi("srtm wsgi", refused_policy(storage), flooder)
    return b


# -- figures --------------------------------------------------------------------------------

BASE = {"asgi": "asgi bare", "wsgi": "wsgi bare"}
#: What each peer's added cost is measured against: its own framework.
FRAMEWORK = {"slowapi": "starlette", "slowapi-mw": "starlette", "flask-limiter": "flask"}


def base_of(b: Bench, name: str) -> str | None:
    """The variant ``name``'s added cost is measured against (None: its time is its cost)."""
    if "alone" in name:
        return None
    return FRAMEWORK.get(name, BASE[b.kind[name]])


def srtm_state(gate: Any) -> dict[str, Any]:
    """Traffic management on or off at the end, and how requests were decided."""
    pool = gate.snapshot()["pools"]["default"]
    users = pool["users"].values()
    return {
        "tm_active_at_end": pool["active"],
        "leased": sum(u["leased"] for u in users),
        "cached_refusals": sum(u["cached_refusals"] for u in users),
        "offered": sum(u["offered"] for u in users),
    }


def figures(b: Bench, samples: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Per variant: median per-request time, and median added cost over its base."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        base = base_of(b, name)
        extra = values if base is None else added(values, samples[base])
        driver = b.drivers.get(name)
        out[name] = {
            "per_request_us": round(median(values) * 1e6, 3),
            "added_us": round(median(extra) * 1e6, 3),
            "added_over": base,
            "statuses": dict(driver.statuses) if driver is not None else None,
            "srtm": srtm_state(b.gates[name]) if name in b.gates else None,
            "rounds_us": [round(v * 1e6, 3) for v in values],
        }
    return out


def ratio(
    samples: dict[str, list[float]], b: Bench, top: str, bottom: str, *, total: bool = False
) -> float:
    """Median over rounds of ``top``'s added cost over ``bottom``'s (or of their totals)."""

    def extra(name: str) -> list[float]:
        base = base_of(b, name)
        if total or base is None:
            return samples[name]
        return added(samples[name], samples[base])

    return round(ratio_median(extra(top), extra(bottom)), 3)


def targets_memory(samples: dict[str, list[float]], b: Bench) -> list[dict[str, Any]]:
    """The issue's in-process targets on memory://, each with its measured ratio."""
    rows = []
    for srtm, peer, floor in (
        ("srtm asgi", "slowapi", "asgi floor"),
        ("srtm wsgi", "flask-limiter", "wsgi floor"),
    ):
        if peer in samples:
            r_peer = ratio(samples, b, srtm, peer)
            rows.append(
                {
                    "target": f"{srtm} added cost <= {PEER_GOAL} of {peer}'s",
                    "measured": r_peer,
                    "goal": PEER_GOAL,
                    "met": r_peer <= PEER_GOAL,
                }
            )
        r_floor = ratio(samples, b, srtm, floor)
        rows.append(
            {
                "target": f"{srtm} added cost <= {FLOOR_GOAL}x a raw limits hit ({floor})",
                "measured": r_floor,
                "goal": FLOOR_GOAL,
                "met": r_floor <= FLOOR_GOAL,
            }
        )
    return rows


def refusal_rates(
    samples: dict[str, list[float]], figs: dict[str, dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """srtm's refusals per second on one core, and a refusal's time over a bare request's.

    A refusal at line rate costs about what the bare app's admitted request does.
    """
    out = {}
    for srtm, bare in (("srtm asgi", "asgi bare"), ("srtm wsgi", "wsgi bare")):
        if srtm in samples:
            out[srtm] = {
                "refusals_per_s": round(1e6 / figs[srtm]["per_request_us"]),
                "vs_bare_admitted": round(ratio_median(samples[srtm], samples[bare]), 3),
            }
    return out


def targets_redis(samples: dict[str, list[float]], b: Bench) -> list[dict[str, Any]]:
    """Per-request time at least 4x better than the peer's on the same Redis."""
    rows = []
    for srtm, peer in (
        ("srtm asgi", "slowapi"),
        ("srtm asgi, lease", "slowapi"),
        ("srtm wsgi", "flask-limiter"),
        ("srtm wsgi, lease", "flask-limiter"),
    ):
        if peer not in samples:
            continue
        for total in (False, True):
            r = ratio(samples, b, srtm, peer, total=total)
            what = "per-request time" if total else "added cost"
            rows.append(
                {
                    "target": f"{srtm} {what} <= 1/4 of {peer}'s",
                    "measured": r,
                    "goal": 0.25,
                    "met": r <= 0.25,
                }
            )
    return rows


def run_scenario(
    title: str, b: Bench, *, n: int, rounds: int, quick: bool
) -> tuple[dict[str, list[float]], dict[str, dict[str, Any]]]:
    """Measure a scenario, print its table, return samples and figures."""
    print(f"\n-- {title}: {n} requests a round, {rounds} rounds, medians")
    samples = interleaved(b.variants, n=n, rounds=rounds, warmup=0 if quick else 1)
    figs = figures(b, samples)
    rows = [
        [
            name,
            f"{f['per_request_us']:.2f}",
            f"{f['added_us']:.2f}",
            f["added_over"] or "-",
            " ".join(f"{k}:{v}" for k, v in sorted((f["statuses"] or {}).items())),
        ]
        for name, f in figs.items()
    ]
    head = ["variant", "per request (us)", "added (us)", "added over", "statuses"]
    print(table(rows, head, title=f"{title} ({rounds} rounds of {n})"))
    return samples, figs


def print_targets(rows: list[dict[str, Any]]) -> None:
    print(
        table(
            [
                [
                    r["target"],
                    f"{r['measured']:.3f}",
                    f"{r['goal']}",
                    "met" if r["met"] else f"MISSED by {r['measured'] / r['goal']:.2f}x",
                ]
                for r in rows
            ],
            ["target", "measured ratio", "goal", ""],
            title="targets",
        )
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 15, quick 2)")
    parser.add_argument("-n", type=int, default=None, help="requests a round (default 2000)")
    parser.add_argument("--no-redis", action="store_true", help="memory:// only")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 15)
    n = args.n or (20 if args.quick else 2000)
    if args.quick:
        global BATCH
        BATCH = 200
    logging.getLogger("srtm.policy").setLevel(logging.ERROR)  # the over-subscription warning
    info = machine()
    header("in-process cost per request", info)
    names = _apps.users(USERS)
    flooder = names[:1]
    result: dict[str, Any] = {
        "machine": info,
        "users": USERS,
        "virtual_rate": RATE,
        "lease": {"size": LEASE.size, "horizon": LEASE.horizon},
        "rounds": rounds,
        "requests_per_round": n,
        "scenarios": {},
    }
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        storages = ["memory://"]
        redis_cm = contextlib.nullcontext("")
        if not args.no_redis:
            redis_cm = private_redis(args.redis_url)  # type: ignore[assignment]
        with redis_cm as redis_url:
            if redis_url:
                storages.append(redis_url)
            for storage in storages:
                label = "memory" if storage == "memory://" else "redis"
                if label == "redis":
                    flush_redis(storage)  # every scenario starts on an empty store
                b = admitted_scenario(loop, storage, names, breakdown=True)
                try:
                    samples, figs = run_scenario(
                        f"{label}: admitted, {USERS} Users",
                        b,
                        n=n if label == "memory" else max(n // 2, 10),
                        rounds=rounds,
                        quick=args.quick,
                    )
                finally:
                    b.close()
                checks = (
                    targets_memory(samples, b) if label == "memory" else targets_redis(samples, b)
                )
                print_targets(checks)
                result["scenarios"][f"{label}/admitted"] = {"variants": figs, "targets": checks}
                if label == "redis":
                    flush_redis(storage)
                b = refused_scenario(loop, storage, flooder)
                try:
                    samples, figs = run_scenario(
                        f"{label}: refused, one User over its limit",
                        b,
                        n=n if label == "memory" else max(n // 2, 10),
                        rounds=rounds,
                        quick=args.quick,
                    )
                finally:
                    b.close()
                refused_rows = [
                    {
                        "target": f"{srtm} refusal added cost, against {peer}'s",
                        "measured": ratio(samples, b, srtm, peer),
                    }
                    for srtm, peer in (
                        ("srtm asgi", "slowapi"),
                        ("srtm asgi", "asgi floor"),
                        ("srtm wsgi", "flask-limiter"),
                        ("srtm wsgi", "wsgi floor"),
                    )
                    if peer in samples
                ]
                for row in refused_rows:
                    print(f"   {row['target']}: {row['measured']:.3f}")
                line_rate = refusal_rates(samples, figs)
                for name, rate in line_rate.items():
                    print(
                        f"   {name}: {rate['refusals_per_s']:,.0f} refusals/s on one core, "
                        f"{rate['vs_bare_admitted']:.2f}x the bare app's time per request"
                    )
                result["scenarios"][f"{label}/refused"] = {
                    "variants": figs,
                    "ratios": refused_rows,
                    "line_rate": line_rate,
                }
    finally:
        _apps.close_storages(loop)
        loop.close()
    path = write_json("inprocess", result, args.out)
    print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
