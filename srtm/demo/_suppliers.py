"""The Suppliers' back ends: each submits SRs to its own ``AsyncServiceRequestClient``.

They run in a process of their own (``python -m srtm.demo._suppliers``), apart from the
gateway, as Suppliers' systems are: the clients' work does not compete with the gateway
for one interpreter lock, so the latency they measure is the gateway's and their own,
not the load generator's. All Suppliers share one asyncio loop there. Each submits SRs
at Poisson arrival times, a mix of top-ups, routine changes and bulk reads; its client
queues them by priority, paces itself to its allocation and the gateway's RateLimit
fields, and honours Retry-After. Every SR's end (the client's ``SRSettled`` event) is
reported with its latency: from submission to the final response, so queueing, pacing
and any throttling pause are all in it.

The child reads its settings as JSON on stdin and writes one JSON line per event on
stdout; :class:`Suppliers` in the parent starts it and collects what it reports.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from srtm.demo._process import child_env

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from srtm.client import ClientEvent
    from srtm.demo._config import DemoConfig, Supplier

__all__ = ["Settled", "Suppliers", "main"]

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
    queued: float | None  # seconds from submission to the first send (None: never sent)
    outcome: str  # "response", "error" or "cancelled"
    status: int | None
    attempts: int


# -- the child: the Suppliers' back ends and clients ------------------------------------


async def _supplier(
    supplier: Supplier,
    url: str,
    start: float,
    stop: float,
    rng: random.Random,
    emit: Callable[[dict[str, Any]], None],
    halted: asyncio.Event,
) -> None:
    from srtm.client import AsyncServiceRequestClient, ServiceRequest, SRSettled

    def on_event(event: ClientEvent) -> None:
        if isinstance(event, SRSettled):
            settled = Settled(
                label=supplier.label,
                variant=event.sr.variant,
                submitted=time.time() - event.latency,
                latency=event.latency,
                queued=event.queued_for,
                outcome=event.outcome,
                status=event.status_code,
                attempts=event.attempts,
            )
            emit({"settled": asdict(settled)})

    client = AsyncServiceRequestClient(
        base_url=url,
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
        due = start
        while not halted.is_set():
            due += rng.expovariate(supplier.rate)
            if due >= stop:
                break
            await asyncio.sleep(max(0.0, due - time.time()))  # the next arrival
            variant = rng.choices(variants, shares)[0]
            sr = ServiceRequest(
                variant=variant,
                body=_BODY.format(variant=variant).encode(),
                path="/sr",
                safe_to_repeat=variant.startswith("4."),  # reads may be repeated
            )
            futures.append(client.submit(sr))
            emit({"submitted": supplier.label})
    finally:
        await client.aclose(cancel=halted.is_set(), drain_timeout=10.0)
        for f in futures:  # outcomes are in the events; retrieve errors so none is "lost"
            if f.done() and not f.cancelled():
                f.exception()
        emit({"unsettled": [supplier.label, sum(not f.done() for f in futures)]})


async def _run(settings: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
    from srtm.demo._config import Supplier

    halted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, halted.set)  # stop submitting; cancel what is unsent
    rng = random.Random(settings["seed"])
    suppliers = [
        Supplier(**{**s, "mix": tuple(tuple(pair) for pair in s["mix"])})
        for s in settings["suppliers"]
    ]
    await asyncio.gather(
        *(
            _supplier(
                s,
                settings["url"],
                settings["start"],
                settings["stop"],
                random.Random(rng.random()),
                emit,
                halted,
            )
            for s in suppliers
        )
    )


def main() -> int:
    """The child: settings as JSON on stdin, one JSON line per event on stdout."""
    settings = json.loads(sys.stdin.read())
    out = sys.stdout

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event, separators=(",", ":")) + "\n")
        out.flush()

    asyncio.run(_run(settings, emit))
    return 0


# -- the parent: start the child, collect its reports ---------------------------------


class Suppliers:
    """The Suppliers' process, seen from the demo: what they submitted and how it ended."""

    def __init__(self, config: DemoConfig, url: str, *, start: float, stop: float) -> None:
        self.settings = {
            "url": url,
            "start": start,
            "stop": stop,
            "seed": config.seed,
            "suppliers": [asdict(s) for s in config.suppliers],
        }
        self.lock = threading.Lock()
        self.settled: list[Settled] = []
        self.submitted: Counter[str] = Counter()
        self.unsettled: dict[str, int] = {}  # after the drain: SRs with no end (should be none)
        self.error: BaseException | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._reader = threading.Thread(target=self._read, name="srtm-demo-suppliers", daemon=True)
        # The child's stderr goes to a file, so that it can never block on a full pipe.
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()

    def start(self) -> None:
        """Start the Suppliers' process; it submits from ``start`` to ``stop``."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "srtm.demo._suppliers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
            env=child_env(),
        )
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(self.settings))
        self._proc.stdin.close()
        self._reader.start()

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                event = json.loads(line)
                with self.lock:
                    if "settled" in event:
                        self.settled.append(Settled(**event["settled"]))
                    elif "submitted" in event:
                        self.submitted[event["submitted"]] += 1
                    elif "unsettled" in event:
                        label, count = event["unsettled"]
                        self.unsettled[label] = count
            if proc.wait() != 0:
                self._errors.seek(0)
                detail = self._errors.read().decode(errors="replace").strip()
                raise RuntimeError(
                    f"the Suppliers' process exited with {proc.returncode}:\n{detail}"
                )
        except BaseException as exc:  # reported after the run
            self.error = exc

    def join(self, timeout: float) -> bool:
        """Wait for the Suppliers to finish (their clients drained); False on a timeout."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def halt(self) -> None:
        """Stop early (Ctrl-C): submit nothing more, cancel what was not sent."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        """Make sure the process is gone; release its error file."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._errors.close()


if __name__ == "__main__":
    sys.exit(main())
