"""ASGI middleware: traffic management in front of any ASGI gateway app.

``ASGITrafficManager(app, policy)`` wraps a Starlette, FastAPI, Django or plain ASGI
app. For each HTTP request it identifies the Service User from headers a trusted front
end set (or the TLS extension), asks the gate, and either passes the request on, adding
the ``RateLimit`` fields to the response, or answers 401/429/503 itself. Before a
refusal it reads and discards a small request body (at most :data:`DRAIN_LIMIT`; past
it the HTTP/1.1 connection is closed), so keep-alive and HTTP/2 connections stay
usable; it never passes on, buffers or parses a body. Websocket traffic passes through
untouched; lifespan passes through, and the gate is closed at shutdown, even when the
app does not speak lifespan itself (Django's ``ASGIHandler``).

The app finds ``scope["srtm.gate"]`` on every HTTP request and ``scope["srtm.decision"]``
and ``scope["srtm.user"]`` on admitted ones: the same keys as the WSGI middleware. A gate
may be built first and handed in (``gate=AsyncGate(policy)``), so an app holds it even
where the framework builds the middleware lazily (Starlette's ``add_middleware``). The
gate runs on ``limits.aio`` storages, so no decision blocks the event loop.

Two paths, one decision. The **fast path** serves the default set-up: the built-in
header identity (``identify`` not given, or :func:`srtm.identity.identify_by_headers`)
and one pool (no ``pool_of``). It reads the User, DUIS-version and front-end-secret
headers straight from the raw header list (no dict of every header, no
:class:`~srtm.identity.RequestView`), checks trust from them and the peer address, and
takes the Identity, or the 401/403 answer, from a bounded cache per raw value pair that
the general path itself fills. The **general path** (any other ``identify`` or a
``pool_of``, or a request the fast path does not expect: a wanted header given twice,
a value that is not bytes) builds the RequestView and resolves it in full. Both then
share the rest: RateLimit fields pre-encoded per value, and refusals answered from
prebuilt status, header list and body per distinct refusal (``_common.Front``).
tests/middleware/test_lean.py checks that both paths decide identically.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

from srtm.aio.gate import AsyncGate
from srtm.identity import FrontEndTrust, Identity, RequestView
from srtm.middleware._common import (
    DRAIN_LIMIT,
    DRAIN_LIMIT_H2,
    DRAIN_SECONDS,
    Answer,
    Front,
    Lean,
    content_length,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping

    from srtm.gate import Decision
    from srtm.identity import Identify, PoolOf
    from srtm.middleware._common import ExemptPaths, MetricsSink, OnRefusal
    from srtm.policy import TrafficPolicy

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["ASGITrafficManager"]

log: logging.Logger = logging.getLogger("srtm.middleware")


class ASGITrafficManager:
    """Share a back end's capacity fairly across Service Users (ASGI).

    Give either ``policy`` (one :class:`~srtm.TrafficPolicy` or a mapping of pools) or a
    ready ``gate``; ``clock`` and ``background`` only apply when the gate is built here.
    ``trusted_peers`` and ``front_end_secret`` say which connections may vouch for the
    identity headers (see :class:`srtm.identity.FrontEndTrust` and docs/trust.md).
    ``metrics`` (a :class:`srtm.metrics.GatewayMetrics` for this gate) is told of every
    decision; ``metrics_path`` serves its exposition at that path, exempt from
    identification (metrics are built for the gate when only the path is given).
    ``on_refusal(request, decision)`` is called for every refusal, shadow ones included.
    """

    def __init__(
        self,
        app: ASGIApp,
        policy: TrafficPolicy | Mapping[str, TrafficPolicy] | None = None,
        *,
        gate: AsyncGate | None = None,
        identify: Identify | None = None,
        pool_of: PoolOf | None = None,
        exempt_paths: ExemptPaths = (),
        trusted_peers: Collection[str] = (),
        front_end_secret: str | None = None,
        front_end_secret_header: str = "X-SRTM-Front-End-Secret",
        metrics: MetricsSink | None = None,
        metrics_path: str | None = None,
        on_refusal: OnRefusal | None = None,
        clock: Callable[[], float] | None = None,
        background: bool | None = None,
    ) -> None:
        self.app = app
        if gate is None:
            if policy is None:
                raise TypeError("ASGITrafficManager needs a policy or a gate")
            gate = AsyncGate(
                policy,
                clock=clock or time.time,
                background=True if background is None else background,
            )
        elif policy is not None or clock is not None or background is not None:
            raise TypeError("give either a gate, or a policy (with clock, background): not both")
        elif not isinstance(gate, AsyncGate):
            raise TypeError(
                f"the ASGI middleware needs an srtm.aio.gate.AsyncGate, got {type(gate).__name__}"
                " (srtm.Gate is the WSGI middleware's)"
            )
        self.gate = gate
        trust = FrontEndTrust(trusted_peers, front_end_secret, front_end_secret_header)
        self._front = Front(
            gate,
            identify=identify,
            pool_of=pool_of,
            exempt_paths=exempt_paths,
            trust=trust,
            metrics=metrics,
            metrics_path=metrics_path,
            on_refusal=on_refusal,
        )
        #: The :class:`srtm.metrics.GatewayMetrics` this middleware reports to, if any.
        self.metrics: MetricsSink | None = self._front.metrics
        # The fast path (module docstring), or None: every request takes the general one.
        self._lean: Lean | None = Lean.of(self._front, decode=True)
        # The gate's decision without a coroutine where no I/O is needed (memory://);
        # not where a subclass decides otherwise.
        self._decide_now: Callable[[Identity], Decision | None] | None = (
            gate.decide_now if type(gate).decide is AsyncGate.decide else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        scope["srtm.gate"] = self.gate
        front = self._front
        if front.watch_workers:
            front.check_workers()
        if front.paths_matter:
            path = scope.get("path", "/")
            if not isinstance(path, str):
                path = "/"
            if path == front.metrics_path and front.metrics is not None:
                await _respond(scope, receive, send, _exposition(front.metrics, scope))
                return
            if front.exempt(path):
                await self.app(scope, receive, send)
                return
        view: RequestView | None = None
        resolved: Identity | Answer | None = None
        lean = self._lean
        if lean is not None:
            try:
                resolved = _lean_resolve(lean, scope)
            except Exception:  # a scope the fast path does not expect: the general path
                resolved = None
        if resolved is None:
            try:
                view = _view(scope)
                identity_or_response = front.resolve(view)
                resolved = (
                    identity_or_response
                    if isinstance(identity_or_response, Identity)
                    else Answer.of(identity_or_response)
                )
            except Exception:  # a scope no server should send; still no 500
                resolved = front.decision_failed()
        if not isinstance(resolved, Identity):
            front.unanswered(resolved.status)
            await _respond(scope, receive, send, resolved)
            return
        metrics = front.metrics
        decide_now = self._decide_now
        try:
            started = 0.0 if metrics is None else time.perf_counter()
            decision = None if decide_now is None else decide_now(resolved)
            if decision is None:
                decision = await self.gate.decide(resolved)
            if metrics is not None:
                metrics.observe(decision, time.perf_counter() - started)
        except Exception:  # a fault in srtm itself: logged, answered 503 (see _common)
            await _respond(scope, receive, send, front.decision_failed())
            return
        if decision.admitted < decision.offered:
            if front.on_refusal is not None:
                if view is None:
                    view = _safe_view(scope)  # built only now: the callback is given it
                if view is not None:
                    front.refused(view, decision)
            if not decision.allowed:
                await _respond(scope, receive, send, front.refusal(decision))
                return
        scope["srtm.decision"] = decision
        scope["srtm.user"] = decision.user
        await self.app(scope, receive, _WithFields(send, front.raw_fields(decision)))

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass lifespan to the app; close the gate at shutdown; stand in if the app can't."""
        received: list[str] = []
        replied: list[str] = []

        async def watched_receive() -> Message:
            message = await receive()
            kind = message.get("type", "")
            received.append(kind)
            if kind == "lifespan.shutdown":
                # The gate lets go of its storage connections first, on the loop that
                # opened them.
                await self._close_quietly()
            return message

        async def watched_send(message: Message) -> None:
            replied.append(message.get("type", ""))
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        except Exception:
            if "lifespan.startup.complete" in replied or "lifespan.startup.failed" in replied:
                raise  # the app speaks lifespan; its failure is its own
            log.info("srtm: the app does not support lifespan; srtm completes it itself")
        else:
            if replied:
                return
        # The app does not speak lifespan (Django's ASGIHandler raises, some apps just
        # return): answer the server ourselves, so that shutdown still closes the gate.
        await _stand_in_lifespan(receive, send, received, self._close_quietly)

    async def _close_quietly(self) -> None:
        try:
            await self.gate.close()
        except Exception:  # shutdown goes on whatever a storage says on the way out
            log.warning("srtm: closing the gate failed", exc_info=True)

    async def aclose(self) -> None:
        """Stop background recomputation and release storage connections."""
        await self.gate.close()


async def _stand_in_lifespan(
    receive: Receive,
    send: Send,
    received: list[str],
    close: Callable[[], Awaitable[None]],
) -> None:
    if "lifespan.startup" not in received:
        message = await receive()
        if message.get("type") != "lifespan.startup":
            return
    await send({"type": "lifespan.startup.complete"})
    if "lifespan.shutdown" not in received:
        while (await receive()).get("type") != "lifespan.shutdown":
            pass
        await close()
    await send({"type": "lifespan.shutdown.complete"})


class _WithFields:
    """The server's ``send``, adding the two RateLimit fields to the response start.

    A slotted callable rather than a closure: one small object per admitted request.
    Not a coroutine function: it returns the server's own ``send(...)`` awaitable, so
    each message costs no coroutine of ours (the app awaits what it is given, as ASGI
    has it).
    """

    __slots__ = ("fields", "send")

    def __init__(self, send: Send, fields: tuple[tuple[bytes, bytes], tuple[bytes, bytes]]):
        self.send = send
        self.fields = fields

    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            # a new message and header list: the app's own may be constants it reuses
            headers = [*message.get("headers", ()), *self.fields]
            message = dict(message)
            message["headers"] = headers
        return self.send(message)


def _lean_resolve(lean: Lean, scope: Scope) -> Identity | Answer | None:
    """The fast path's identity: the wanted headers read straight from the raw list.

    None sends the request down the general path: a wanted header given twice (the
    general path joins repeats) or a value that is not bytes.
    """
    user = version = secret = None
    user_name = lean.user_raw
    version_name = lean.version_raw
    secret_name = lean.secret_raw
    for name, value in scope["headers"]:
        if len(name) not in lean.lengths:
            continue  # cannot be a wanted name, in any case
        if name != user_name and name != version_name and name != secret_name:
            name = name.lower()  # ASGI says lower-case; a server that does not still works
        if name == user_name:
            if user is not None or type(value) is not bytes:
                return None
            user = value
        elif name == version_name:
            if version is not None or type(value) is not bytes:
                return None
            version = value
        elif name == secret_name:
            if secret is not None or type(value) is not bytes:
                return None
            secret = value
    if lean.guarded:
        client = scope.get("client")
        refused = lean.distrusted(str(client[0]) if client else None, secret)
        if refused is not None:
            return refused
    return lean.identity(user, version)


def _exposition(metrics: MetricsSink, scope: Scope) -> Answer:
    accept = next(
        (v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"accept"), None
    )
    body, content_type = metrics.render(accept)
    return Answer(200, [("Content-Type", content_type), ("Content-Length", str(len(body)))], body)


def _safe_view(scope: Scope) -> RequestView | None:
    """The request for ``on_refusal`` after the fast path: None if it cannot be built."""
    try:
        return _view(scope)
    except Exception:  # odd scope contents the fast path did not read: no callback, no 500
        log.debug("srtm: the refused request could not be described", exc_info=True)
        return None


def _view(scope: Scope) -> RequestView:
    raw = scope.get("headers", ())
    # One comprehension decodes them all (cheaper, measured, than scanning the raw list
    # for each header asked for); repeated names, rare, are joined as HTTP says.
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}
    if len(headers) < len(raw):
        headers = {}
        for raw_name, raw_value in raw:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if extensions else None
    client = scope.get("client")
    return RequestView(
        method=scope.get("method", "GET"),
        path=scope.get("path", "/"),
        headers=headers,
        client_dn=tls.get("client_cert_name") if tls else None,
        peer=str(client[0]) if client else None,
    )


async def _respond(scope: Scope, receive: Receive, send: Send, answer: Answer) -> None:
    """Answer a refusal, after reading a small body so the connection stays usable."""
    headers = [*answer.raw, _CLOSE] if await _drain(scope, receive) else [*answer.raw]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


_CLOSE = (b"connection", b"close")
#: The names _drain looks for (a tuple: compared with ==, whatever bytes-like type a
#: server gives), and their lengths.
_FRAMING = (b"content-length", b"transfer-encoding", b"expect")
_FRAMING_LENGTHS = frozenset(len(name) for name in _FRAMING)


async def _drain(scope: Scope, receive: Receive) -> bool:
    """Read and discard up to DRAIN_LIMIT of the body; True: close the connection instead.

    An HTTP/1.1 server reads the next request where this one's body ends, and some
    (hypercorn) drop the connection when the app answered without reading it; HTTP/2
    streams left half-read upset hypercorn's h2 protocol. Past the bound, or when the
    client waits for ``100 Continue``, HTTP/1.1 says ``Connection: close`` (HTTP/2 has
    no such header: the stream simply ends).
    """
    http1 = scope.get("http_version", "1.1") in ("1.0", "1.1")
    if http1:
        expect = length = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if len(name) not in _FRAMING_LENGTHS:
                continue  # not a framing header in any case: no lower() for it
            lname = name
            if lname not in _FRAMING:
                lname = name.lower()  # ASGI says lower-case; a server that does not still works
                if lname not in _FRAMING:
                    continue
            if lname == b"content-length":
                # plain ASCII digits (bytes.isdigit is ASCII-only): what content_length
                # would accept, without decoding; anything else goes through it
                if type(value) is bytes and value.isdigit() and len(value) <= 18:
                    length = int(value)
                else:
                    length = content_length(value.decode("latin-1"))
                if length is None:
                    return True  # unreadable framing: do not guess where the body ends
            elif lname == b"transfer-encoding":
                chunked = True
            elif lname == b"expect":
                expect = value
        if expect is not None and expect.strip().lower() == b"100-continue":
            return True  # reading would ask the client to send what nobody wants
        if not chunked and not length:
            return False  # no body on the wire
        if length is not None and length > DRAIN_LIMIT:
            return True
    # HTTP/2 has no Connection: close, and an ASGI app cannot reset one stream; what
    # is left unread upsets hypercorn's h2 protocol. Flow control bounds what the client
    # has in flight and other streams go on meanwhile, so read further there.
    limit = DRAIN_LIMIT if http1 else DRAIN_LIMIT_H2
    seen = 0
    task = asyncio.current_task()
    if task is None:  # not in a task (no server runs an app so): nothing to cut off
        return http1
    guard = _DrainGuard.of(task.get_loop())
    guard.waiting[task] = guard.loop.time() + DRAIN_SECONDS
    if guard.timer is None:
        guard.arm()
    try:
        while True:
            message = await receive()
            if message.get("type") != "http.request":
                return http1  # the client went away
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return False
            if seen > limit:
                return http1
    except asyncio.CancelledError:
        if task not in guard.expired:
            raise  # cancelled by someone else: not ours to swallow
        guard.expired.discard(task)
        task.uncancel()
        return http1
    finally:
        guard.waiting.pop(task, None)


class _DrainGuard:
    """Cuts off refusals whose body has not arrived after DRAIN_SECONDS: one timer for all.

    ``asyncio.timeout`` costs about 4 us a use here (a Timeout, a timer handle, its
    rescheduling): as much as the rest of a refusal, and a flood drains a body per
    refusal. Here a drain only notes its task and deadline; one sweep every fifth of
    DRAIN_SECONDS (at most a second), scheduled while any drain waits, cancels those past
    it: a trickling client is cut off after 1 to 1.2 DRAIN_SECONDS. One guard per loop.
    """

    _guards: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _DrainGuard]] = (
        weakref.WeakKeyDictionary()
    )
    _last: ClassVar[_DrainGuard | None] = None  # the guard used last: its loop, usually

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[asyncio.Task[Any], float] = {}
        self.expired: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _DrainGuard:
        """The guard of ``loop``, made on first use."""
        guard = cls._last
        if guard is None or guard.loop is not loop:
            guard = cls._guards.get(loop)
            if guard is None:
                guard = cls._guards[loop] = cls(loop)
            cls._last = guard
        return guard

    def arm(self) -> None:
        """Schedule the sweep, unless it is already."""
        if self.timer is None:
            self.timer = self.loop.call_later(_sweep_period(), self.sweep)

    def sweep(self) -> None:
        now = self.loop.time()
        for task, deadline in list(self.waiting.items()):
            if deadline <= now:
                del self.waiting[task]
                self.expired.add(task)
                task.cancel()
        self.timer = self.loop.call_later(_sweep_period(), self.sweep) if self.waiting else None


def _sweep_period() -> float:
    return min(1.0, DRAIN_SECONDS / 5)
