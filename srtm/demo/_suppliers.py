"""The Suppliers' back ends: each submits SRs to its own ``AsyncServiceRequestClient``.

All of them run on one asyncio loop in a thread of their own (apart from the gateway's).
Each Supplier's back end submits SRs at Poisson arrival times, a mix of top-ups,
routine changes and bulk reads; its client queues them by priority, paces itself to its
allocation and the gateway's RateLimit fields, and honours Retry-After. Every SR's end
(the client's ``SRSettled`` event) is recorded with its latency: from submission to the
final response, so queueing, pacing and any throttling pause are all in it.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from srtm.client import AsyncServiceRequestClient, ServiceRequest, SRSettled

if TYPE_CHECKING:
    import httpx

    from srtm.client import ClientEvent
    from srtm.demo._config import DemoConfig, Supplier

__all__ = ["Settled", "Suppliers"]

_BODY = (
    '<Request xmlns="http://www.dccinterface.co.uk/ServiceUserGateway" schemaVersion="4.1">'
    "<Header><ServiceReferenceVariant>{variant}</ServiceReferenceVariant></Header></Request>"
)


@dataclass(frozen=True, slots=True)
class Settled:
    """One SR's end, as its Supplier's client reported it."""

    label: str
    variant: str
    submitted: float  # wall clock
    latency: float  # seconds from submission to this end
    outcome: str  # "response", "error" or "cancelled"
    status: int | None
    attempts: int


class Suppliers:
    """Every Supplier's back end and client, on one loop in a thread."""

    def __init__(self, config: DemoConfig, url: str, *, start: float, stop: float) -> None:
        self.config = config
        self.url = url
        self.start_at = start
        self.stop_at = stop
        self.lock = threading.Lock()
        self.settled: list[Settled] = []
        self.submitted: Counter[str] = Counter()
        self.unsettled: dict[str, int] = {}  # after the drain: SRs with no end (should be none)
        self._thread = threading.Thread(target=self._run, name="srtm-demo-suppliers", daemon=True)
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait for the Suppliers to finish (their clients drained); False on a timeout."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def halt(self) -> None:
        """Stop early (Ctrl-C): submit nothing more, cancel what was not sent."""
        self._halt.set()

    def _run(self) -> None:
        try:
            asyncio.run(self._all())
        except BaseException as exc:  # reported after the run
            self.error = exc

    async def _all(self) -> None:
        rng = random.Random(self.config.seed)
        await asyncio.gather(
            *(self._one(s, random.Random(rng.random())) for s in self.config.suppliers)
        )

    async def _one(self, supplier: Supplier, rng: random.Random) -> None:
        def on_event(event: ClientEvent) -> None:
            if isinstance(event, SRSettled):
                record = Settled(
                    label=supplier.label,
                    variant=event.sr.variant,
                    submitted=time.time() - event.latency,
                    latency=event.latency,
                    outcome=event.outcome,
                    status=event.status_code,
                    attempts=event.attempts,
                )
                with self.lock:
                    self.settled.append(record)

        client = AsyncServiceRequestClient(
            base_url=self.url,
            user_id=supplier.user_id,
            duis_version="4.1",
            rate=supplier.allocation,
            timeout=10.0,
            on_event=on_event,
            rng=random.Random(rng.random()),
        )
        variants = [v for v, _ in supplier.mix]
        shares = [share for _, share in supplier.mix]
        futures: list[asyncio.Future[httpx.Response]] = []
        try:
            due = self.start_at
            while True:
                due += rng.expovariate(supplier.rate)
                if due >= self.stop_at:
                    break
                await asyncio.sleep(max(0.0, due - time.time()))  # the next arrival
                if self._halt.is_set():
                    break
                variant = rng.choices(variants, shares)[0]
                sr = ServiceRequest(
                    variant=variant,
                    body=_BODY.format(variant=variant).encode(),
                    path="/sr",
                    safe_to_repeat=variant.startswith("4."),  # reads may be repeated
                )
                futures.append(client.submit(sr))
                with self.lock:
                    self.submitted[supplier.label] += 1
        finally:
            await client.aclose(cancel=self._halt.is_set(), drain_timeout=10.0)
            pending = sum(not f.done() for f in futures)
            for f in (
                futures
            ):  # the outcome is in the events; retrieve errors so none is "never retrieved"
                if f.done() and not f.cancelled():
                    f.exception()
            with self.lock:
                self.unsettled[supplier.label] = pending
