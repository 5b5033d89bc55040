"""The client: dispatch rate over real HTTP, and how long a top-up queues behind bulk reads.

* ``dispatch``: SRs settled per second by each client over real HTTP/1.1 to an instant
  local server (the bare ASGI app under uvicorn, in a process of its own), with 8 in
  flight (the default), against raw httpx doing the same POSTs with the same transport
  and concurrency (8 threads sharing one ``httpx.Client``; 8 coroutines sharing one
  ``httpx.AsyncClient``); and, with aiohttp installed (the ``aiohttp`` extra), both
  clients with ``transport="aiohttp"`` against raw aiohttp (8 coroutines sharing one
  ``ClientSession``). The variants run in interleaved rounds and the figures are medians
  over rounds; the ratio is the median of each round's ratio, so a loaded machine shifts
  both sides alike. Also: the time to ``submit`` one SR. ``--in-flight`` changes the 8.
  Like for like: every variant reads each body and checks each status inside the timed
  span, and the clients dispatch customer reads (4.1.1), a class that may use all the
  in-flight slots: bulk reads may hold only ``bulk_share`` of them (6 of 8), the rest
  kept for urgent SRs, which would run the client at less concurrency than raw.
* ``top-up``: the client's own machinery (queue, priorities, settlement) through an
  in-process ``httpx.MockTransport`` whose gateway takes ``--service-ms`` per request;
  100,000 bulk reads (variant 4.8.1, the lowest class) are queued, then a prepayment
  top-up (2.2, the highest) is submitted every 50 ms while the queue is still deep. Each
  top-up's latency from ``submit`` to its response, against what a FIFO queue would
  make it wait (the depth ahead of it over the dispatch rate).

Usage: ``python bench/client_dispatch.py [--quick] [--srs N] [--rounds R] [--bulk N]
[--in-flight K] [--no-aiohttp | --no-httpx] [--no-top-up]``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import os
import statistics
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._common import (
    base_parser,
    free_port,
    header,
    interleaved,
    machine,
    median,
    ratio_median,
    table,
    write_json,
)
from srtm.client import AsyncServiceRequestClient, ServiceRequest, ServiceRequestClient

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

USER = "90-B3-D5-1F-30-01-00-00"
BULK, TOP_UP = "4.8.1", "2.2"  # Read Active Import Profile Data; Top Up Device
READ = "4.1.1"  # Read Instantaneous Import Registers: a customer read, not held to bulk_share
IN_FLIGHT = 8
BODY = b"<Read/>"


def bulk_reads(n: int) -> list[ServiceRequest]:
    return [ServiceRequest(variant=BULK, body=BODY, path="/sr") for _ in range(n)]


def reads(n: int) -> list[ServiceRequest]:
    """SRs that may use every in-flight slot (as raw's IN_FLIGHT workers do)."""
    return [ServiceRequest(variant=READ, body=BODY, path="/sr") for _ in range(n)]


def sync_transport(service: float) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if service:
            time.sleep(service)  # the gateway's service time
        return httpx.Response(200, text="ok")

    return httpx.MockTransport(handler)


def async_transport(service: float) -> httpx.MockTransport:
    async def handler(request: httpx.Request) -> httpx.Response:
        if service:
            await asyncio.sleep(service)  # the gateway's service time
        return httpx.Response(200, text="ok")

    return httpx.MockTransport(handler)


def client_options() -> dict[str, Any]:
    return {"base_url": "http://gateway.test", "user_id": USER, "follow_rate_limit": False}


# -- dispatch rate over real HTTP ----------------------------------------------------------


@contextlib.contextmanager
def instant_server() -> Iterator[str]:
    """The bare ASGI app under uvicorn in a process of its own; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench._serve", "--app", "bare", "--port", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(url + "/sr", content=BODY).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the instant server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def limits() -> httpx.Limits:
    return httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)


class Dispatch:
    """The variants, each keeping its client (and its connections) across rounds.

    Over httpx: raw httpx sync and async against srtm's sync and async clients. Over
    aiohttp (when installed): raw aiohttp (IN_FLIGHT coroutines sharing one session, the
    library's own ceiling) against both srtm clients with ``transport="aiohttp"``.
    """

    def __init__(self, url: str, *, aiohttp: bool) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.raw_sync = httpx.Client(base_url=url, limits=limits())
        options: dict[str, Any] = {
            "base_url": url,
            "user_id": USER,
            "max_in_flight": IN_FLIGHT,
            "follow_rate_limit": False,
        }
        self.srtm_sync = ServiceRequestClient(**options)
        self.aiohttp = aiohttp
        self.srtm_sync_aiohttp = (
            ServiceRequestClient(**options, transport="aiohttp") if aiohttp else None
        )

        async def make() -> tuple[httpx.AsyncClient, AsyncServiceRequestClient, Any, Any]:
            session = client = None
            if aiohttp:
                import aiohttp as library

                session = library.ClientSession(
                    connector=library.TCPConnector(limit=IN_FLIGHT),
                    cookie_jar=library.DummyCookieJar(),
                )
                client = AsyncServiceRequestClient(**options, transport="aiohttp")
            return (
                httpx.AsyncClient(base_url=url, limits=limits()),
                AsyncServiceRequestClient(**options),
                session,
                client,
            )

        made = self.loop.run_until_complete(make())
        self.raw_async, self.srtm_async, self.raw_aiohttp, self.srtm_async_aiohttp = made
        self.submit_us: dict[str, list[float]] = {
            "sync": [],
            "async": [],
            "sync aiohttp": [],
            "async aiohttp": [],
        }

    def close(self) -> None:
        self.raw_sync.close()
        self.srtm_sync.close()
        if self.srtm_sync_aiohttp is not None:
            self.srtm_sync_aiohttp.close()

        async def close() -> None:
            await self.raw_async.aclose()
            await self.srtm_async.aclose()
            if self.raw_aiohttp is not None:
                await self.raw_aiohttp.close()
            if self.srtm_async_aiohttp is not None:
                await self.srtm_async_aiohttp.aclose()

        self.loop.run_until_complete(close())
        self.loop.close()

    def variants(self, *, httpx: bool = True) -> dict[str, Callable[[int], float]]:
        variants: dict[str, Callable[[int], float]] = {}
        if httpx:
            variants["httpx sync"] = self.httpx_sync
            variants["srtm sync"] = partial(self.client_sync, self.srtm_sync, "sync")
            variants["httpx async"] = self.httpx_async
            variants["srtm async"] = partial(self.client_async, self.srtm_async, "async")
        if self.srtm_sync_aiohttp is not None and self.srtm_async_aiohttp is not None:
            variants["aiohttp raw"] = self.aiohttp_raw
            variants["srtm sync aiohttp"] = partial(
                self.client_sync, self.srtm_sync_aiohttp, "sync aiohttp"
            )
            variants["srtm async aiohttp"] = partial(
                self.client_async, self.srtm_async_aiohttp, "async aiohttp"
            )
        return variants

    def aiohttp_raw(self, n: int) -> float:
        headers = {"content-type": "application/xml", "x-service-user-id": USER}
        url = self.url + "/sr"

        async def run() -> float:
            counter = iter(range(n))

            async def work() -> None:
                for _ in counter:
                    async with self.raw_aiohttp.post(url, data=BODY, headers=headers) as answer:
                        await answer.read()
                        answer.raise_for_status()

            start = time.perf_counter()
            await asyncio.gather(*(work() for _ in range(IN_FLIGHT)))
            return time.perf_counter() - start

        return self.loop.run_until_complete(run())

    def httpx_sync(self, n: int) -> float:
        counter = iter(range(n))
        lock = threading.Lock()
        headers = {"content-type": "application/xml", "x-service-user-id": USER}

        def work() -> None:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                self.raw_sync.post("/sr", content=BODY, headers=headers).raise_for_status()

        threads = [threading.Thread(target=work) for _ in range(IN_FLIGHT)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.perf_counter() - start

    def client_sync(self, client: ServiceRequestClient, kind: str, n: int) -> float:
        srs = reads(n)
        start = time.perf_counter()
        futures = [client.submit(sr) for sr in srs]
        submitted = time.perf_counter()
        concurrent.futures.wait(futures, timeout=300)  # one wake-up, not one per SR
        for future in futures:  # statuses checked in the timed span, as raw checks them
            future.result(timeout=0).raise_for_status()
        done = time.perf_counter()
        self.submit_us[kind].append((submitted - start) / n * 1e6)
        return done - start

    def httpx_async(self, n: int) -> float:
        headers = {"content-type": "application/xml", "x-service-user-id": USER}

        async def run() -> float:
            counter = iter(range(n))

            async def work() -> None:
                for _ in counter:
                    response = await self.raw_async.post("/sr", content=BODY, headers=headers)
                    response.raise_for_status()

            start = time.perf_counter()
            await asyncio.gather(*(work() for _ in range(IN_FLIGHT)))
            return time.perf_counter() - start

        return self.loop.run_until_complete(run())

    def client_async(self, client: AsyncServiceRequestClient, kind: str, n: int) -> float:
        srs = reads(n)

        async def run() -> float:
            start = time.perf_counter()
            futures = [client.submit(sr) for sr in srs]
            submitted = time.perf_counter()
            for response in await asyncio.gather(*futures):
                response.raise_for_status()
            done = time.perf_counter()
            self.submit_us[kind].append((submitted - start) / n * 1e6)
            return done - start

        return self.loop.run_until_complete(run())


def dispatch(n: int, rounds: int, *, aiohttp: bool, httpx: bool = True) -> dict[str, Any]:
    """SRs settled per second by each variant, medians over interleaved rounds."""
    load_before = os.getloadavg()
    with instant_server() as url:
        bench = Dispatch(url, aiohttp=aiohttp)
        try:
            samples = interleaved(bench.variants(httpx=httpx), n=n, rounds=rounds)
        finally:
            bench.close()
    result: dict[str, Any] = {"srs_per_round": n, "rounds": rounds, "in_flight": IN_FLIGHT}
    pairs = [("sync", "httpx sync"), ("async", "httpx async")] if httpx else []
    if aiohttp:
        pairs += [("sync aiohttp", "aiohttp raw"), ("async aiohttp", "aiohttp raw")]
    for kind, raw_name in pairs:
        ours, raw = samples[f"srtm {kind}"], samples[raw_name]
        result[kind] = {
            "settled_per_s": round(1 / median(ours)),
            "raw": raw_name,
            "raw_per_s": round(1 / median(raw)),
            # each round's srtm rate over the raw library's rate in the same round
            "ratio_to_raw": round(ratio_median(raw, ours), 3),
            "submit_us": round(median(bench.submit_us[kind]), 2),
            "per_round_per_s": [round(1 / s) for s in ours],
            "raw_per_round_per_s": [round(1 / s) for s in raw],
        }
    result["load_average_before_after"] = [
        [round(x, 2) for x in load_before],
        [round(x, 2) for x in os.getloadavg()],
    ]
    return result


# -- a top-up behind the bulk ---------------------------------------------------------------


def topup_sync(bulk: int, topups: int, service: float) -> dict[str, Any]:
    srs = bulk_reads(bulk)
    latencies: list[float] = []
    depths: list[int] = []
    lock = threading.Lock()
    client = ServiceRequestClient(**client_options(), transport=sync_transport(service))
    try:
        start = time.perf_counter()
        for sr in srs:
            client.submit(sr)
        submit_s = time.perf_counter() - start
        settled_before = client.stats().responses
        rate_from = time.perf_counter()
        for _ in range(topups):
            depths.append(sum(client.stats().queued.values()))
            sent = time.perf_counter()
            future = client.submit(ServiceRequest(variant=TOP_UP, body=b"<TopUp/>", path="/sr"))

            def done(_: Any, sent: float = sent) -> None:
                with lock:
                    latencies.append(time.perf_counter() - sent)

            future.add_done_callback(done)
            future.result(timeout=60)
            time.sleep(0.05)  # the next top-up arrives 50 ms later
        stats = client.stats()
        rate = (stats.responses - settled_before) / (time.perf_counter() - rate_from)
    finally:
        client.close(cancel=True)
    return summarise(latencies, depths, rate, submit_s, bulk, stats.waited)


def topup_async(bulk: int, topups: int, service: float) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        srs = bulk_reads(bulk)
        latencies: list[float] = []
        depths: list[int] = []
        client = AsyncServiceRequestClient(**client_options(), transport=async_transport(service))
        try:
            start = time.perf_counter()
            for sr in srs:
                client.submit(sr)
            submit_s = time.perf_counter() - start
            settled_before = client.stats().responses
            rate_from = time.perf_counter()
            for _ in range(topups):
                depths.append(sum(client.stats().queued.values()))
                sent = time.perf_counter()
                await client.submit(ServiceRequest(variant=TOP_UP, body=b"<TopUp/>", path="/sr"))
                latencies.append(time.perf_counter() - sent)
                await asyncio.sleep(0.05)  # the next top-up arrives 50 ms later
            stats = client.stats()
            rate = (stats.responses - settled_before) / (time.perf_counter() - rate_from)
        finally:
            await client.aclose(cancel=True)
        return summarise(latencies, depths, rate, submit_s, bulk, stats.waited)

    return asyncio.run(run())


def summarise(
    latencies: list[float], depths: list[int], rate: float, submit_s: float, bulk: int, waited: Any
) -> dict[str, Any]:
    fifo = [d / rate for d in depths] if rate else []
    ordered = sorted(latencies)
    return {
        "bulk_queued": bulk,
        "submit_all_s": round(submit_s, 3),
        "queue_depth_at_top_ups": depths,
        "dispatch_rate_per_s": round(rate, 1),
        "top_up_latency_ms": {
            "median": round(statistics.median(ordered) * 1e3, 2),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1e3, 2),
            "max": round(ordered[-1] * 1e3, 2),
        },
        "fifo_would_wait_s_median": round(statistics.median(fifo), 2) if fifo else None,
        "client_waited_by_class": {
            str(k): {"count": v.count, "mean_ms": round(v.mean * 1e3, 3)}
            for k, v in dict(waited).items()
            if hasattr(v, "mean") and hasattr(v, "count")
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    global IN_FLIGHT
    parser = base_parser(__doc__ or "")
    parser.add_argument("--srs", type=int, default=None, help="SRs per dispatch round (5000)")
    parser.add_argument("--rounds", type=int, default=None, help="dispatch rounds (9)")
    parser.add_argument("--bulk", type=int, default=None, help="bulk reads queued (100000)")
    parser.add_argument("--service-ms", type=float, default=2.0, help="gateway time a request")
    parser.add_argument("--no-top-up", action="store_true", help="dispatch figures only")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="SRs in flight (8)")
    parser.add_argument("--no-aiohttp", action="store_true", help="httpx variants only")
    parser.add_argument("--no-httpx", action="store_true", help="aiohttp variants only")
    args = parser.parse_args(argv)
    IN_FLIGHT = args.in_flight
    bulk = args.bulk or (1_000 if args.quick else 100_000)
    n = args.srs or (200 if args.quick else 5_000)
    rounds = args.rounds or (2 if args.quick else 9)
    topups = 2 if args.quick else 20
    service = args.service_ms / 1000
    info = machine()
    header("the client: dispatch rate over real HTTP, and a top-up behind the bulk", info)
    result: dict[str, Any] = {"machine": info, "service_ms": args.service_ms}
    with_aiohttp = not args.no_aiohttp and importlib.util.find_spec("aiohttp") is not None
    with_httpx = not args.no_httpx
    result["dispatch"] = dispatch(n, rounds, aiohttp=with_aiohttp, httpx=with_httpx)
    d = result["dispatch"]
    kinds = (["sync", "async"] if with_httpx else []) + (
        ["sync aiohttp", "async aiohttp"] if with_aiohttp else []
    )
    print(
        table(
            [
                [
                    kind,
                    f"{d[kind]['settled_per_s']}",
                    d[kind]["raw"],
                    f"{d[kind]['raw_per_s']}",
                    f"{d[kind]['ratio_to_raw']:.2f}",
                    f"{d[kind]['submit_us']:.1f}",
                ]
                for kind in kinds
            ],
            ["client", "srtm SR/s", "raw", "raw SR/s", "srtm / raw (median)", "submit (us)"],
            title=f"dispatch over real HTTP to an instant server, {IN_FLIGHT} in flight",
        )
    )
    print(f"   {IN_FLIGHT} in flight")
    print(f"   load average before, after: {d['load_average_before_after']}")
    if not args.no_top_up:
        result["top_up"] = {
            "sync": topup_sync(bulk, topups, service),
            "async": topup_async(bulk, topups, service),
        }
        print(
            table(
                [
                    [
                        kind,
                        f"{f['bulk_queued']}",
                        f"{f['submit_all_s']:.2f}",
                        f"{statistics.median(f['queue_depth_at_top_ups']):.0f}",
                        f"{f['dispatch_rate_per_s']:.0f}",
                        f"{f['top_up_latency_ms']['median']:.2f}",
                        f"{f['top_up_latency_ms']['p95']:.2f}",
                        f"{f['top_up_latency_ms']['max']:.2f}",
                        f"{f['fifo_would_wait_s_median']}",
                    ]
                    for kind, f in result["top_up"].items()
                ],
                [
                    "client",
                    "bulk queued",
                    "queueing them (s)",
                    "depth at top-up",
                    "dispatch/s",
                    "top-up p50 ms",
                    "p95 ms",
                    "max ms",
                    "FIFO would wait (s)",
                ],
                title="a prepayment top-up behind 100,000 queued bulk reads",
            )
        )
    path = write_json("client_dispatch", result, args.out)
    print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
