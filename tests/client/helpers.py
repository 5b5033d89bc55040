"""Test helpers: a scripted gateway, a real uvicorn server in a thread, client facades.

The scripted gateway behaves as the gateway contract says (429 for DUIS >= 4.1 else
503, ``Retry-After`` in whole seconds >= 1, ``X-SRTM-Refused``, a JSON body, RateLimit
fields) with a per-User fixed window, so the client can be tested end to end before and
beside the real middleware.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn

from srtm.client import AsyncServiceRequestClient, ClientStats, ServiceRequest, ServiceRequestClient

if TYPE_CHECKING:
    import httpx

    Handle = concurrent.futures.Future[httpx.Response]

T = TypeVar("T")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# ---------------------------------------------------------------------------------------
# Scripted ASGI apps


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request as the server saw it."""

    at: float
    wall: float
    user: str
    request_id: str
    status: int
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"<Response/>"


Handler = Callable[["Request"], Awaitable["Reply | None"]]


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    receive: Receive
    path: str

    @property
    def user(self) -> str:
        return self.headers.get("x-service-user-id", "")

    @property
    def request_id(self) -> str:
        return self.headers.get("x-request-id", "")


class ScriptApp:
    """A raw ASGI app that answers each request with ``handler`` and logs arrivals."""

    def __init__(self, handler: Handler, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.handler = handler
        self.clock = clock
        self.log: list[Arrival] = []
        self.started = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                    self.started.set()
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert scope["type"] == "http"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = Request(headers=headers, body=body, receive=receive, path=scope["path"])
        at, wall = self.clock(), time.time()
        reply = await self.handler(request)
        if reply is None:  # no answer at all: the client gave up and went away
            self.log.append(Arrival(at, wall, request.user, request.request_id, 0, body))
            return
        self.log.append(Arrival(at, wall, request.user, request.request_id, reply.status, body))
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})


def refusal(
    *, user: str, retry_after: int, duis: str, reason: str = "user-limit", pool: str = "default"
) -> Reply:
    """A refusal exactly as the gateway contract describes it."""
    status = 429 if _version(duis) >= (4, 1) else 503
    return Reply(
        status=status,
        headers={
            "Retry-After": str(retry_after),
            "X-SRTM-Refused": reason,
            "Content-Type": "application/json",
        },
        body=json.dumps(
            {
                "error": "throttled",
                "user": user,
                "pool": pool,
                "retry_after": retry_after,
                "detail": f"{user} is over its limit in {pool}",
            }
        ).encode(),
    )


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)


class ThrottlingGateway:
    """Per-User fixed windows of ``limit`` requests per ``window`` seconds.

    Refuses over the limit with ``Retry-After`` = whole seconds to the window's end (at
    least 1). ``advertise`` adds the RateLimit fields to every identified response.
    """

    def __init__(
        self,
        *,
        limit: int,
        window: float = 1.0,
        advertise: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.advertise = advertise
        self.clock = clock
        self._windows: dict[str, tuple[int, int]] = {}
        self.app = ScriptApp(self.handle, clock=clock)

    def _fields(self, remaining: int, reset: float) -> dict[str, str]:
        if not self.advertise:
            return {}
        return {
            "RateLimit-Policy": f'"default";q={self.limit};w={self.window:g}',
            "RateLimit": f'"default";r={remaining};t={max(1, math.ceil(reset))}',
        }

    async def handle(self, request: Request) -> Reply:
        now = self.clock()
        index = int(now // self.window)
        start, used = self._windows.get(request.user, (index, 0))
        if start != index:
            used = 0
        reset = (index + 1) * self.window - now
        if used >= self.limit:
            self._windows[request.user] = (index, used)
            reply = refusal(
                user=request.user,
                retry_after=max(1, math.ceil(reset)),
                duis=request.headers.get("x-duis-version", ""),
            )
            reply.headers.update(self._fields(0, reset))
            return reply
        used += 1
        self._windows[request.user] = (index, used)
        return Reply(200, self._fields(self.limit - used, reset), b"<Response/>")

    def admitted(self) -> list[Arrival]:
        return [a for a in self.app.log if a.status == 200]


# ---------------------------------------------------------------------------------------
# A real server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: Any, *, port: int = 0, started: threading.Event | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields its base URL.

    The socket is bound and listening before uvicorn starts, so clients may connect at
    once (the kernel queues them); ``started`` (set by the app's lifespan startup) is
    then awaited so that a server that fails to start fails the test quickly.
    """
    # proto=IPPROTO_TCP, or asyncio does not set TCP_NODELAY on accepted connections
    # (it checks sock.proto) and every response waits out a delayed ACK (about 40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        backlog=2048,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if started is not None and not started.wait(timeout=30):
            raise RuntimeError("the test server did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


# ---------------------------------------------------------------------------------------
# One face for both clients, so behavioural tests run against each


class SyncFacade:
    """The sync client as it is."""

    kind = "sync"

    def __init__(self, **kwargs: Any) -> None:
        self.client = ServiceRequestClient(**kwargs)

    def submit(self, sr: ServiceRequest) -> concurrent.futures.Future[httpx.Response]:
        return self.client.submit(sr)

    def submit_many(
        self, srs: list[ServiceRequest]
    ) -> list[concurrent.futures.Future[httpx.Response]]:
        return [self.client.submit(s) for s in srs]

    def submit_here(self, sr: ServiceRequest) -> Any:
        """Submit from the client's own thread or loop (from a hook or a handler)."""
        return self.client.submit(sr)

    def wrap(self, handle: Any) -> concurrent.futures.Future[httpx.Response]:
        assert isinstance(handle, concurrent.futures.Future)
        return handle

    def send(self, sr: ServiceRequest) -> httpx.Response:
        return self.client.send(sr, timeout=120)

    def stats(self) -> ClientStats:
        return self.client.stats()

    def close(
        self, *, cancel: bool = False, drain_timeout: float | None = None
    ) -> list[ServiceRequest]:
        return self.client.close(cancel=cancel, drain_timeout=drain_timeout)

    def stop(self) -> None:
        self.client.close(cancel=True)


class AsyncFacade:
    """The async client on an event loop in a thread of its own, seen from outside."""

    kind = "async"

    def __init__(self, **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._stopped = False

        async def make() -> AsyncServiceRequestClient:
            return AsyncServiceRequestClient(**kwargs)

        self.client = self._run(make())

    def _run(self, coro: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout=120)

    def wrap(self, handle: Any) -> concurrent.futures.Future[httpx.Response]:
        async def wait() -> httpx.Response:
            result: httpx.Response = await handle
            return result

        return asyncio.run_coroutine_threadsafe(wait(), self.loop)

    def submit(self, sr: ServiceRequest) -> concurrent.futures.Future[httpx.Response]:
        async def go() -> asyncio.Future[httpx.Response]:
            return self.client.submit(sr)

        return self.wrap(self._run(go()))

    def submit_many(
        self, srs: list[ServiceRequest]
    ) -> list[concurrent.futures.Future[httpx.Response]]:
        """Submit all in one go on the loop: the queue fills before the first send."""

        async def go() -> list[asyncio.Future[httpx.Response]]:
            return [self.client.submit(s) for s in srs]

        return [self.wrap(handle) for handle in self._run(go())]

    def submit_here(self, sr: ServiceRequest) -> Any:
        return self.client.submit(sr)

    def send(self, sr: ServiceRequest) -> httpx.Response:
        return self._run(self.client.send(sr))

    def stats(self) -> ClientStats:
        async def go() -> ClientStats:
            return self.client.stats()

        return self._run(go())

    def close(
        self, *, cancel: bool = False, drain_timeout: float | None = None
    ) -> list[ServiceRequest]:
        if self._stopped:
            return []
        return self._run(self.client.aclose(cancel=cancel, drain_timeout=drain_timeout))

    def stop(self) -> None:
        """Close the client (cancelling) if still open, and stop the loop."""
        if self._stopped:
            return
        self.close(cancel=True)
        if self._stopped:
            return
        self._stopped = True

        async def drain() -> None:
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(drain(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()


Facade = SyncFacade | AsyncFacade


def sr(variant: str = "2.2", **kwargs: Any) -> ServiceRequest:
    """An SR with a small body naming its variant."""
    body = kwargs.pop("body", f"<Request variant='{variant}'/>".encode())
    return ServiceRequest(variant=variant, body=body, **kwargs)
