"""The demo's gateway: a back-end app behind ``ASGITrafficManager``, served by uvicorn.

Everything runs on one asyncio loop in a thread of its own: uvicorn, the gate's
recomputation task, and a sampler that reads the gate's state (traffic management on or
off, each User's limit) a few times a window. A thin recorder in front of the middleware
counts every request by User, window and status, in the gate's own windows: the
middleware's clock leaves the decision's timestamp in a context variable that the
recorder reads once the response has gone, so a request is counted in the window the
gate decided it in.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn

from srtm.middleware import ASGITrafficManager

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from srtm.policy import TrafficPolicy

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]

__all__ = ["Counts", "Gateway", "Sample"]

_decided_at: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "srtm_demo_decided_at", default=None
)


def _clock() -> float:
    """``time.time``, remembering the reading for the request being decided."""
    now = time.time()
    _decided_at.set(now)
    return now


async def backend(scope: Scope, receive: Receive, send: Send) -> None:
    """The protected back end (the DSP): accepts every SR it is given, at once."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b'<Response status="accepted"/>'
    headers = [(b"content-type", b"application/xml"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Counts:
    """One User's requests in one window, by what the gateway answered."""

    offered: int = 0
    admitted: int = 0
    refused_429: int = 0
    refused_503: int = 0
    other: int = 0  # 401 or anything unexpected

    def add(self, status: int) -> None:
        self.offered += 1
        if status == 200:
            self.admitted += 1
        elif status == 429:
            self.refused_429 += 1
        elif status == 503:
            self.refused_503 += 1
        else:
            self.other += 1

    @property
    def refused(self) -> int:
        return self.refused_429 + self.refused_503


@dataclass(frozen=True, slots=True)
class Sample:
    """The gate's state at one moment: TM on or off, and each User's limit (SR/s)."""

    t: float  # wall clock
    active: bool
    offered_rate: float
    limits: dict[str, float | None]


class _Recorder:
    """ASGI wrapper: tallies every HTTP request by (window, User) and status."""

    def __init__(self, app: ASGITrafficManager, window: float) -> None:
        self.app = app
        self.window = window
        self.lock = threading.Lock()
        self.tally: defaultdict[int, defaultdict[str, Counts]] = defaultdict(
            lambda: defaultdict(Counts)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        _decided_at.set(None)
        await self.app(scope, receive, send_status)
        decided = _decided_at.get()
        at = decided if decided is not None else time.time()
        user = "?"
        for name, value in scope.get("headers", ()):
            if name.lower() == b"x-service-user-id":
                user = value.decode("latin-1")
                break
        with self.lock:
            self.tally[int(at // self.window)][user].add(status)


class Gateway:
    """uvicorn on 127.0.0.1 (a free port) in a thread, serving the managed back end."""

    def __init__(self, policy: TrafficPolicy, *, sample_every: float = 0.25) -> None:
        self.policy = policy
        self.manager = ASGITrafficManager(backend, policy, clock=_clock)
        self.recorder = _Recorder(self.manager, policy.window)
        self.sample_every = sample_every
        self.samples: list[Sample] = []
        self.log: list[tuple[float, str]] = []  # (wall clock, message) from the gate's logger
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.recorder,
                host="127.0.0.1",
                port=0,
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="on",
                ws="none",
                timeout_keep_alive=30,
            )
        )
        self._thread = threading.Thread(target=self._run, name="srtm-demo-gateway", daemon=True)
        self._error: BaseException | None = None
        self.url = ""

    def start(self, timeout: float = 15.0) -> str:
        """Start serving; returns the base URL once uvicorn listens."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn sets `started` once it listens and offers no event to wait on: poll it.
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the gateway did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start within {timeout:.0f} s")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    def stop(self) -> None:
        """Stop serving (lifespan shutdown closes the gate) and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout=15)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start() or after the run
            self._error = exc

    async def _serve(self) -> None:
        sampler = asyncio.create_task(self._sample())
        try:
            await self._server.serve()
        finally:
            sampler.cancel()

    async def _sample(self) -> None:
        gov = self.manager.gate.pools["default"].governor
        while True:
            snapshot = self.manager.gate.snapshot()["pools"]["default"]
            limits = {user: figures["limit"] for user, figures in snapshot["users"].items()}
            self.samples.append(Sample(time.time(), gov.active, snapshot["offered_rate"], limits))
            await asyncio.sleep(self.sample_every)  # a periodic reading, not a wait for an event

    def counts(self) -> dict[int, dict[str, Counts]]:
        """A copy of the tally: window index -> User ID -> counts."""
        with self.recorder.lock:
            return {
                w: {u: Counts(**vars(c)) for u, c in users.items()}
                for w, users in self.recorder.tally.items()
            }

    @property
    def error(self) -> BaseException | None:
        """What stopped the server thread, if anything did."""
        return self._error
