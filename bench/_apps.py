"""The apps under test, and drivers that call them in process (no HTTP client in the loop).

Every variant answers ``POST /sr`` with ``200 ok`` and limits each Service User, named by
the ``X-Service-User-ID`` header, with the same kind of limit: a fixed window of one
second per User. The peers are built the way their documentation shows.
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable, Iterable, MutableMapping

    from starlette.requests import Request

    Scope = MutableMapping[str, Any]
    ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
    WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

USER_HEADER = "X-Service-User-ID"
#: Storages the peers and floors opened: closed by :func:`close_storages`.
_OPEN: list[Any] = []
#: A per-User limit no benchmark reaches: the admitted path.
HIGH = 10**9


def installed(peer: str) -> bool:
    """Whether a peer (``slowapi``, ``flask-limiter``) is installed: ``pip install
    -e '.[bench]'`` brings them; without them the scripts skip their variants."""
    import importlib.util

    return importlib.util.find_spec(peer.replace("-", "_")) is not None


def users(count: int) -> list[str]:
    """``count`` Service User IDs shaped like DCC EUI-64s."""
    return [f"90-B3-D5-1F-30-01-{k // 256:02X}-{k % 256:02X}" for k in range(count)]


# -- requests -------------------------------------------------------------------------------


def asgi_scope(user: str) -> dict[str, Any]:
    """An HTTP scope as uvicorn builds it for a gateway POST."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "path": "/sr",
        "raw_path": b"/sr",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"gateway.example"),
            (b"user-agent", b"srtm-bench/1"),
            (b"content-type", b"application/xml"),
            (b"content-length", b"0"),
            (b"x-request-id", b"0f8fad5bd9cb469fa165b26b3f05ba2c"),
            (b"x-service-user-id", user.encode()),
            (b"x-duis-version", b"4.1"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def wsgi_environ(user: str) -> dict[str, Any]:
    """A WSGI environ as a server builds it for a gateway POST."""
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/sr",
        "QUERY_STRING": "",
        "SERVER_NAME": "gateway.example",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/xml",
        "CONTENT_LENGTH": "0",
        "HTTP_HOST": "gateway.example",
        "HTTP_USER_AGENT": "srtm-bench/1",
        "HTTP_X_REQUEST_ID": "0f8fad5bd9cb469fa165b26b3f05ba2c",
        "HTTP_X_SERVICE_USER_ID": user,
        "HTTP_X_DUIS_VERSION": "4.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


class AsgiDriver:
    """Serve ``n`` requests through an ASGI app on a running loop; count the statuses."""

    def __init__(self, app: ASGIApp, names: list[str], *, every: int = 0, tick: Any = None) -> None:
        self.app = app
        self.scopes = [asgi_scope(u) for u in names]
        self.statuses: Counter[int] = Counter()
        self.every, self.tick = every, tick
        self.served = 0

    async def run(self, n: int) -> float:
        statuses = self.statuses
        scopes, count = self.scopes, len(self.scopes)
        app, every, tick = self.app, self.every, self.tick
        served = self.served

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] += 1

        start = time.perf_counter()
        for i in range(served, served + n):
            if every and i % every == 0:
                await tick()
            await app(dict(scopes[i % count]), receive, send)
        elapsed = time.perf_counter() - start
        self.served = served + n
        return elapsed


class WsgiDriver:
    """Serve ``n`` requests through a WSGI app; count the statuses."""

    def __init__(self, app: WSGIApp, names: list[str], *, every: int = 0, tick: Any = None) -> None:
        self.app = app
        self.environs = [wsgi_environ(u) for u in names]
        self.statuses: Counter[int] = Counter()
        self.every, self.tick = every, tick
        self.served = 0

    def run(self, n: int) -> float:
        statuses = self.statuses
        environs, count = self.environs, len(self.environs)
        app, every, tick = self.app, self.every, self.tick
        served = self.served

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses[int(status[:3])] += 1
            return None

        start = time.perf_counter()
        for i in range(served, served + n):
            if every and i % every == 0:
                tick()
            body = app(dict(environs[i % count]), start_response)
            for _ in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        elapsed = time.perf_counter() - start
        self.served = served + n
        return elapsed


# -- bare apps and the floor --------------------------------------------------------------

_OK_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]


async def bare_asgi(scope: Scope, receive: Any, send: Any) -> None:
    """The cheapest possible ASGI app: 200 ok."""
    await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
    await send({"type": "http.response.body", "body": b"ok"})


def bare_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The cheapest possible WSGI app: 200 ok."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def floor_asgi(storage_uri: str, amount: int = HIGH) -> ASGIApp:
    """The bare ASGI app behind one raw ``limits.aio`` fixed-window hit per request.

    What any ``limits``-based middleware must at least do: find the User and hit once.
    """
    from limits import RateLimitItemPerSecond
    from limits.aio.strategies import FixedWindowRateLimiter
    from limits.storage import storage_from_string

    uri = storage_uri if storage_uri.startswith("async+") else "async+" + storage_uri
    storage = storage_from_string(uri)
    _OPEN.append(storage)
    limiter = FixedWindowRateLimiter(storage)  # type: ignore[arg-type]
    item = RateLimitItemPerSecond(amount)

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        user = b""
        for name, value in scope["headers"]:
            if name == b"x-service-user-id":
                user = value
                break
        if await limiter.hit(item, user.decode()):
            await bare_asgi(scope, receive, send)
        else:
            await send({"type": "http.response.start", "status": 429, "headers": _OK_HEADERS})
            await send({"type": "http.response.body", "body": b"no"})

    return app


def floor_wsgi(storage_uri: str, amount: int = HIGH) -> WSGIApp:
    """The bare WSGI app behind one raw ``limits`` fixed-window hit per request."""
    from limits import RateLimitItemPerSecond
    from limits.storage import storage_from_string
    from limits.strategies import FixedWindowRateLimiter

    storage = storage_from_string(storage_uri.removeprefix("async+"))
    _OPEN.append(storage)
    limiter = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(amount)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if limiter.hit(item, environ.get("HTTP_X_SERVICE_USER_ID", "")):
            return bare_wsgi(environ, start_response)
        start_response("429 Too Many Requests", [("Content-Length", "2")])
        return [b"no"]

    return app


# -- the peers ------------------------------------------------------------------------------


def starlette_app() -> Any:
    """A bare Starlette app: the base slowapi's added cost is measured against."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def sr(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/sr", sr, methods=["POST"])])


def quiet_peers() -> None:
    """Silence the peers' log line per refusal: the benchmark compares limiting, not logging."""
    for name in ("slowapi", "flask-limiter"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _user_key(request: Any) -> str:
    return str(request.headers.get(USER_HEADER, ""))


def slowapi_app(storage_uri: str, amount: int = HIGH) -> Any:
    """slowapi as its README shows it: a ``@limiter.limit`` decorator on a Starlette route."""
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    quiet_peers()
    limiter = Limiter(
        key_func=_user_key, storage_uri=storage_uri.removeprefix("async+"), strategy="fixed-window"
    )

    @limiter.limit(f"{amount}/second")
    async def sr(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/sr", sr, methods=["POST"])])
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
    _OPEN.append(limiter._storage)
    return app


def slowapi_asgi_app(storage_uri: str, amount: int = HIGH) -> Any:
    """slowapi's pure-ASGI middleware with a default limit on the same Starlette app."""
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded
    from slowapi.middleware import SlowAPIASGIMiddleware

    quiet_peers()
    limiter = Limiter(
        key_func=_user_key,
        default_limits=[f"{amount}/second"],
        storage_uri=storage_uri.removeprefix("async+"),
        strategy="fixed-window",
    )
    app = starlette_app()
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)
    app.add_middleware(SlowAPIASGIMiddleware)
    _OPEN.append(limiter._storage)
    return app


def flask_app() -> Any:
    """A bare Flask app: the base Flask-Limiter's added cost is measured against."""
    from flask import Flask

    app = Flask("bench")

    @app.post("/sr")
    def sr() -> str:
        return "ok"

    quiet_peers()
    return app


def flask_limiter_app(storage_uri: str, amount: int = HIGH) -> Any:
    """Flask-Limiter as its documentation shows it: a default limit on the app."""
    from flask import request
    from flask_limiter import Limiter

    app = flask_app()
    limiter = Limiter(
        lambda: request.headers.get(USER_HEADER, ""),
        app=app,
        default_limits=[f"{amount}/second"],
        storage_uri=storage_uri.removeprefix("async+"),
        strategy="fixed-window",
    )
    _OPEN.append(limiter.storage)
    return app


def close_storages(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Close the connections of every storage the peers and floors opened."""
    while _OPEN:
        storage = _OPEN.pop()
        bridge = getattr(storage, "bridge", None)
        try:
            if bridge is not None:  # limits.aio on Redis (coredis)
                client = bridge.get_connection()
                close = getattr(client, "aclose", None)
                if close is not None and loop is not None:
                    loop.run_until_complete(close())
                elif hasattr(client, "connection_pool"):
                    client.connection_pool.disconnect()
            elif hasattr(storage, "get_connection"):  # limits on Redis (redis-py)
                storage.get_connection().close()
        except Exception:  # closing is best effort: the benchmark is over
            logging.getLogger("bench").debug("could not close %r", storage, exc_info=True)
    if loop is not None and not loop.is_closed():
        import asyncio

        loop.run_until_complete(asyncio.sleep(0.05))  # let closing transports finish


# -- srtm -----------------------------------------------------------------------------------


class StepClock:
    """A virtual clock that moves ``step`` seconds at each reading: a steady offered rate."""

    def __init__(self, start: float, step: float) -> None:
        self.now, self.step = start, step

    def __call__(self) -> float:
        now = self.now
        self.now = now + self.step
        return now


def run_loop(coro: Awaitable[Any], loop: asyncio.AbstractEventLoop) -> Any:
    """Run a coroutine to completion on a loop kept for the whole benchmark."""
    return loop.run_until_complete(coro)


# -- apps served over HTTP (bench/throughput.py) ----------------------------------------

#: Environment variables :func:`served` reads (uvicorn's ``--factory`` takes no arguments).
SERVED_APP = "SRTM_BENCH_APP"
SERVED_STORAGE = "SRTM_BENCH_STORAGE"
SERVED_LEASE = "SRTM_BENCH_LEASE"
#: The flooder's capacity: a User alone against 100 SR/s is refused almost every request.
FLOOD_CAPACITY = 100.0
#: The apps :func:`served` knows.
SERVED = ("bare", "bare-fields", "bare-refusal", "srtm", "srtm-flood")
# A refusal as srtm answers it (429, its six header fields, a body of its size), fixed.
_REFUSAL_BODY = b'{"error":"throttled","status":429,"user":"90-B3-D5-1F-30-01-00-00",' + (
    b'"pool":"default","retry_after":1,"detail":"%s"}' % (b"x" * 110)
)
_REFUSAL_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_REFUSAL_BODY)).encode()),
    (b"retry-after", b"1"),
    (b"x-srtm-refused", b"user-limit"),
    (b"ratelimit-policy", b'"default";q=80;w=1'),
    (b"ratelimit", b'"default";r=0;t=1'),
]


async def bare_refusal(scope: Scope, receive: Any, send: Any) -> None:
    """A fixed 429 the size of srtm's, without any decision: what the HTTP layer charges
    for a refusal (lifespan answered as a real app would)."""
    if scope["type"] == "lifespan":
        from bench import _serve

        await _serve.lifespan_aware(scope, receive, send)
        return
    await send({"type": "http.response.start", "status": 429, "headers": _REFUSAL_HEADERS})
    await send({"type": "http.response.body", "body": _REFUSAL_BODY})


def served() -> Any:
    """The app ``uvicorn --factory bench._apps:served`` serves, chosen by environment.

    ``bare`` and ``bare-fields`` are bench/_serve.py's; ``srtm`` is the bare app behind
    ``ASGITrafficManager`` with traffic management inactive (every request admitted,
    with the RateLimit fields); ``srtm-flood`` the same with capacity 100 SR/s, so that a
    flood from one identity is refused (429) but for its 100 SR/s. Real clock and
    background recomputation, as in production. Through the uvicorn command line rather
    than bench/_serve.py so that ``--http``, ``--loop`` and ``--workers`` can be chosen.
    """
    import os

    from bench import _serve
    from srtm import TrafficPolicy
    from srtm.lease import LeasePolicy
    from srtm.middleware import ASGITrafficManager

    logging.getLogger("srtm.policy").setLevel(logging.ERROR)
    logging.getLogger("srtm.gate").setLevel(logging.ERROR)  # "engaged", once per flood
    # several memory:// workers are the point of the workers measurement: no warning
    logging.getLogger("srtm.middleware").setLevel(logging.ERROR)
    app = os.environ.get(SERVED_APP, "bare")
    storage = os.environ.get(SERVED_STORAGE, "memory://")
    lease = LeasePolicy() if os.environ.get(SERVED_LEASE) == "1" else None
    if app == "bare":
        return _serve.lifespan_aware
    if app == "bare-fields":
        return _serve.bare_with_fields
    if app == "bare-refusal":
        return bare_refusal
    if app == "srtm":
        policy = TrafficPolicy(capacity=1e9, storage=storage, lease=lease)
    elif app == "srtm-flood":
        policy = TrafficPolicy(capacity=FLOOD_CAPACITY, storage=storage, lease=lease)
    else:
        raise SystemExit(f"{SERVED_APP}={app!r}: not one of {', '.join(SERVED)}")
    return ASGITrafficManager(_serve.lifespan_aware, policy, trusted_peers=["127.0.0.1"])
