"""The client: dispatch rate, and how long a top-up queues behind 100,000 bulk reads.

Both clients (``ServiceRequestClient`` on threads, ``AsyncServiceRequestClient`` on
asyncio) send through an in-process ``httpx.MockTransport``, so what is measured is
the client's own machinery (queue, priorities, dispatch, settlement), not a network.

* ``dispatch``: SRs settled per second with a gateway that answers at once, with 8 in
  flight (the default); the time to ``submit`` one SR.
* ``top-up``: a gateway that takes ``--service-ms`` per request (8 in flight: 8 / that
  many SR/s); 100,000 bulk reads (variant 4.8.1, the lowest class) are queued, then a
  prepayment top-up (2.2, the highest) is submitted every 50 ms while the queue is
  still deep. Each top-up's latency from ``submit`` to its response, against what a
  FIFO queue would make it wait (the depth ahead of it over the dispatch rate).

Usage: ``python bench/client_dispatch.py [--quick] [--bulk N] [--service-ms MS]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench._common import base_parser, header, machine, table, write_json
from srtm.client import AsyncServiceRequestClient, ServiceRequest, ServiceRequestClient

USER = "90-B3-D5-1F-30-01-00-00"
BULK, TOP_UP = "4.8.1", "2.2"  # Read Active Import Profile Data; Top Up Device


def bulk_reads(n: int) -> list[ServiceRequest]:
    return [ServiceRequest(variant=BULK, body=b"<Read/>", path="/sr") for _ in range(n)]


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


# -- dispatch rate --------------------------------------------------------------------------


def dispatch_sync(n: int) -> dict[str, float]:
    srs = bulk_reads(n)
    with ServiceRequestClient(**client_options(), transport=sync_transport(0.0)) as client:
        start = time.perf_counter()
        futures = [client.submit(sr) for sr in srs]
        submitted = time.perf_counter()
        for f in futures:
            f.result(timeout=120)
        done = time.perf_counter()
    return {"settled_per_s": n / (done - start), "submit_us": (submitted - start) / n * 1e6}


def dispatch_async(n: int) -> dict[str, float]:
    async def run() -> dict[str, float]:
        srs = bulk_reads(n)
        async with AsyncServiceRequestClient(
            **client_options(), transport=async_transport(0.0)
        ) as client:
            start = time.perf_counter()
            futures = [client.submit(sr) for sr in srs]
            submitted = time.perf_counter()
            await asyncio.gather(*futures)
            done = time.perf_counter()
        return {"settled_per_s": n / (done - start), "submit_us": (submitted - start) / n * 1e6}

    return asyncio.run(run())


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
    parser = base_parser(__doc__ or "")
    parser.add_argument("--bulk", type=int, default=None, help="bulk reads queued (100000)")
    parser.add_argument("--service-ms", type=float, default=2.0, help="gateway time a request")
    args = parser.parse_args(argv)
    bulk = args.bulk or (1_000 if args.quick else 100_000)
    n = 200 if args.quick else 20_000
    topups = 2 if args.quick else 20
    service = args.service_ms / 1000
    info = machine()
    header("the client: dispatch rate and a top-up behind the bulk", info)
    result: dict[str, Any] = {"machine": info, "service_ms": args.service_ms}
    result["dispatch"] = {"sync": dispatch_sync(n), "async": dispatch_async(n), "srs": n}
    print(
        table(
            [
                [kind, f"{f['settled_per_s']:.0f}", f"{f['submit_us']:.1f}"]
                for kind, f in result["dispatch"].items()
                if isinstance(f, dict)
            ],
            ["client", "SRs settled/s (instant gateway)", "submit (us)"],
        )
    )
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
        )
    )
    path = write_json("client_dispatch", result, args.out)
    print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
