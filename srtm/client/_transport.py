"""How the client's requests travel: httpx (the default) or aiohttp (the ``aiohttp`` extra).

The clients see one small interface, ``post(path, body, headers) -> httpx.Response``, so
the core, the handles and the caller see ``httpx.Response`` and httpx's exceptions
whichever library carried the request. httpx is the core dependency and the default.
aiohttp is optional (``pip install 'srtm[aiohttp]'``, chosen with ``transport="aiohttp"``):
over real HTTP it roughly triples the clients' SR rate
(docs/client.md, "Measured"). Its exceptions are mapped onto httpx's by one rule: an
error before the request could have been written (connection refused, connect
timeout) is "unsent"; anything after is "outcome unknown".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import httpx

from srtm._extras import require

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Mapping

    import aiohttp
    import yarl

__all__ = [
    "AiohttpAsyncWire",
    "AiohttpSyncWire",
    "AsyncWire",
    "HttpxAsyncWire",
    "HttpxSyncWire",
    "SyncWire",
    "TransportName",
]

#: The libraries a client can send with (the ``transport`` argument, as a name).
TransportName = Literal["httpx", "aiohttp"]
TRANSPORTS = ("httpx", "aiohttp")

T = TypeVar("T")


class SyncWire(Protocol):
    """Sends one SR's request and returns the response (or raises httpx's exception)."""

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response: ...

    def close(self) -> None: ...


class AsyncWire(Protocol):
    """The asyncio twin of ``SyncWire``."""

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response: ...

    async def aclose(self) -> None: ...


def _limits(max_in_flight: int) -> httpx.Limits:
    return httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)


class HttpxSyncWire:
    """httpx's ``Client``: the default."""

    def __init__(
        self,
        *,
        base_url: httpx.URL,
        headers: Mapping[str, str],
        ssl_context: Callable[[], ssl.SSLContext] | None,
        timeout: httpx.Timeout | float | None,
        max_in_flight: int,
        transport: httpx.BaseTransport | None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            headers=headers,
            verify=ssl_context() if ssl_context is not None else True,
            timeout=timeout,
            limits=_limits(max_in_flight),
            transport=transport,
        )

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self._http.post(path, content=body, headers=headers)

    def close(self) -> None:
        self._http.close()


class HttpxAsyncWire:
    """httpx's ``AsyncClient``: the default."""

    def __init__(
        self,
        *,
        base_url: httpx.URL,
        headers: Mapping[str, str],
        ssl_context: Callable[[], ssl.SSLContext] | None,
        timeout: httpx.Timeout | float | None,
        max_in_flight: int,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            verify=ssl_context() if ssl_context is not None else True,
            timeout=timeout,
            limits=_limits(max_in_flight),
            transport=transport,
        )

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self._http.post(path, content=body, headers=headers)

    async def aclose(self) -> None:
        await self._http.aclose()


def _require_aiohttp() -> None:
    require("srtm.client's transport='aiohttp'", "aiohttp", "aiohttp")


class _Response(httpx.Response):
    """An ``httpx.Response`` made from what aiohttp read; its ``request`` built when asked.

    Building an ``httpx.Request`` is a measurable share of an SR's cost over aiohttp, and
    most callers never look at it: ``response.request`` builds it, and
    ``raise_for_status()`` only when the status is an error (a 2xx passes without it, as
    it does in httpx: the request is there to be named, not needed to pass).
    """

    make_request: Callable[[], httpx.Request] | None = None

    @classmethod
    def received(
        cls,
        status: int,
        raw_headers: Any,
        content: bytes,
        make_request: Callable[[], httpx.Request],
    ) -> _Response:
        """The response to one request, read whole (and decoded) by aiohttp."""
        # As a stream, so the response keeps the headers it came with (content= would add
        # a Content-Length to a chunked answer).
        response = cls(status, headers=raw_headers, stream=httpx.ByteStream(content))
        # Read and closed, as httpx's read() leaves it, without read(): aiohttp has already
        # decoded any Content-Encoding (httpx's decoders would decode it a second time and
        # fail), and read() costs more than the rest of the response together.
        response._content = content
        response._num_bytes_downloaded = len(content)
        response.is_stream_consumed = True
        response.is_closed = True
        response.make_request = make_request
        return response

    @property
    def request(self) -> httpx.Request:
        if self._request is None and self.make_request is not None:
            self._request = self.make_request()
        return super().request

    @request.setter
    def request(self, value: httpx.Request) -> None:
        self._request = value

    def raise_for_status(self) -> httpx.Response:
        if self.is_success and (self._request is not None or self.make_request is not None):
            return self  # what httpx returns for a 2xx that has (or can build) its request
        self.request  # noqa: B018 (built now: httpx reads the attribute behind it)
        return super().raise_for_status()


class AiohttpAsyncWire:
    """aiohttp's ``ClientSession``, made on first use (it belongs to the running loop).

    Answers become ``httpx.Response`` objects and errors httpx's exceptions, so nothing
    past this class knows which library carried the request.
    """

    def __init__(
        self,
        *,
        base_url: httpx.URL,
        headers: Mapping[str, str],
        ssl_context: Callable[[], ssl.SSLContext],
        timeout: httpx.Timeout | float | None,
        max_in_flight: int,
    ) -> None:
        _require_aiohttp()
        # httpx joins a base URL and a path by appending (".../api" + "/sr" is
        # ".../api/sr"); aiohttp's own base_url would replace the path. Join as httpx does.
        raw = base_url.raw_path
        self._base = base_url if raw.endswith(b"/") else base_url.copy_with(raw_path=raw + b"/")
        self._headers = dict(headers)
        self._ssl = ssl_context()
        self._timeout = httpx.Timeout(timeout)
        self._max_in_flight = max_in_flight
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, tuple[yarl.URL, httpx.URL]] = {}

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        t = self._timeout
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            # httpx.Timeout's parts, as aiohttp names them (aiohttp has no write timeout):
            # waiting for a pooled connection, connecting, and each read.
            timeout=aiohttp.ClientTimeout(
                total=None, connect=t.pool, sock_connect=t.connect, sock_read=t.read
            ),
            connector=aiohttp.TCPConnector(limit=self._max_in_flight, ssl=self._ssl),
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx's client keeps none between SRs either
        )
        return self._session

    def _url(self, path: str) -> tuple[yarl.URL, httpx.URL]:
        urls = self._urls.get(path)
        if urls is None:
            import yarl

            url = httpx.URL(path)
            if url.is_relative_url:
                url = self._base.copy_with(raw_path=self._base.raw_path + path.lstrip("/").encode())
            if len(self._urls) > 1024:  # SR paths are few; a caller varying them is bounded
                self._urls.clear()
            urls = self._urls[path] = (yarl.URL(str(url), encoded=True), url)
        return urls

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        import aiohttp

        session = self._session if self._session is not None else self._open()
        target, url = self._url(path)
        try:
            async with session.post(
                target, data=body, headers=headers, allow_redirects=False
            ) as answer:
                content = await answer.read()
                status, raw_headers = answer.status, answer.raw_headers
        except aiohttp.InvalidURL as exc:
            raise httpx.InvalidURL(str(exc)) from exc
        # Before the request could have been written: the gateway never saw it.
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or type(exc).__name__) from exc
        # After: the gateway may have processed it (outcome unknown).
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
        return _Response.received(
            status, raw_headers, content, partial(self._request_for, url, headers, body)
        )

    def _request_for(self, url: httpx.URL, headers: dict[str, str], body: bytes) -> httpx.Request:
        """The ``httpx.Request`` an answer names, as httpx would have sent it."""
        return httpx.Request("POST", url, headers={**self._headers, **headers}, content=body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _ThreadPerCallExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each call (a DNS lookup) on a daemon thread of its own.

    concurrent.futures refuses all new work once the interpreter starts exiting, and the
    exit drain may need a new connection, so a lookup: this executor still works then.
    (asyncio takes only a ThreadPoolExecutor as a loop's default executor, hence the base.)
    """

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name="srtm-client-lookup", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


class AiohttpSyncWire:
    """aiohttp for the sync client: one session on an event loop in a daemon thread.

    The client's workers ``start()`` each send on that loop and go on to the next SR; the
    outcome comes back through a callback, for a worker to report (``post()`` sends and
    waits, for a caller that wants one answer). The sync client's locks, hooks and
    virtual-clock rules stay as they are.
    """

    def __init__(self, **options: Any) -> None:
        self._wire = AiohttpAsyncWire(**options)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[httpx.Response]] = set()
        self._starting: list[
            tuple[str, bytes, dict[str, str], Callable[[httpx.Response | Exception], None]]
        ] = []
        self._woken = False

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                loop.set_default_executor(_ThreadPerCallExecutor())
                self._thread = threading.Thread(
                    target=loop.run_forever, name="srtm-client-aiohttp", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        loop = self._loop if self._loop is not None else self._start()
        return asyncio.run_coroutine_threadsafe(self._wire.post(path, body, headers), loop).result()

    def start(
        self,
        path: str,
        body: bytes,
        headers: dict[str, str],
        done: Callable[[httpx.Response | Exception], None],
    ) -> None:
        """Send in the background; ``done(response or error)`` runs on the loop's thread.

        The client's workers need not wait for each answer: one worker keeps every
        in-flight slot busy, and no thread is handed a request and woken per SR.
        """
        loop = self._loop if self._loop is not None else self._start()
        with self._lock:
            self._starting.append((path, body, headers, done))
            if self._woken:
                return  # the loop has been woken for this batch already
            self._woken = True
        # One wake-up of the loop per batch, not per SR (each is a write to its pipe).
        loop.call_soon_threadsafe(self._begin, loop)

    def _begin(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            batch, self._starting = self._starting, []
            self._woken = False
        for path, body, headers, done in batch:
            task = loop.create_task(self._wire.post(path, body, headers))
            self._tasks.add(task)  # the loop holds tasks weakly
            task.add_done_callback(partial(self._ended, done))

    def _ended(
        self, done: Callable[[httpx.Response | Exception], None], task: asyncio.Task[httpx.Response]
    ) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            # Only when the loop is torn down under a send: it may have been written.
            done(httpx.ReadError("the send was cancelled in flight"))
            return
        error = task.exception()
        if error is None:
            done(task.result())
        elif isinstance(error, Exception):
            done(error)
        else:
            done(httpx.ReadError(f"the send ended in {type(error).__name__}"))

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._wire.aclose(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        if not thread.is_alive():
            loop.close()
