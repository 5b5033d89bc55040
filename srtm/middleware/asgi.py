"""ASGI middleware: traffic management in front of any ASGI gateway app.

``ASGITrafficManager(app, policy)`` wraps a Starlette, FastAPI or plain ASGI app. For
each HTTP request it identifies the Service User from headers (or the TLS extension),
asks the gate, and either passes the request on, adding the ``RateLimit`` fields to the
response, or answers 429/503 itself with ``Retry-After``. It never reads the body, and
lifespan and websocket traffic pass through untouched. The gate runs on ``limits.aio``
storages, so no decision blocks the event loop. The decision is left in
``scope["srtm.decision"]`` for the app.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from srtm.aio.gate import AsyncGate
from srtm.identity import Identity, RequestView
from srtm.middleware._common import Front, refusal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping

    from srtm.identity import Identify, PoolOf
    from srtm.policy import TrafficPolicy

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["ASGITrafficManager"]


class ASGITrafficManager:
    """Share a back end's capacity fairly across Service Users (ASGI)."""

    def __init__(
        self,
        app: ASGIApp,
        policy: TrafficPolicy | Mapping[str, TrafficPolicy],
        *,
        identify: Identify | None = None,
        pool_of: PoolOf | None = None,
        exempt_paths: Collection[str] = (),
        clock: Callable[[], float] = time.time,
        background: bool = True,
    ) -> None:
        self.app = app
        self.gate = AsyncGate(policy, clock=clock, background=background)
        self._front = Front(
            self.gate, identify=identify, pool_of=pool_of, exempt_paths=exempt_paths
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._watch_shutdown(receive), send)
            return
        if scope["type"] != "http" or scope.get("path") in self._front.exempt_paths:
            await self.app(scope, receive, send)
            return
        resolved = self._front.resolve(_view(scope))
        if not isinstance(resolved, Identity):
            await _respond(send, *resolved)
            return
        decision = await self.gate.decide(resolved)
        if not decision.allowed:
            await _respond(send, *refusal(decision))
            return
        (_, policy_field), (_, state_field) = decision.rate_limit_headers()
        extra = ((b"ratelimit-policy", policy_field.encode()), (b"ratelimit", state_field.encode()))

        async def send_with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        scope["srtm.decision"] = decision
        await self.app(scope, receive, send_with_fields)

    def _watch_shutdown(self, receive: Receive) -> Receive:
        # Lifespan messages pass through unchanged; at shutdown the gate lets go of its
        # storage connections first, on the loop that opened them.
        async def watched() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                await self.gate.close()
            return message

        return watched

    async def aclose(self) -> None:
        """Stop background recomputation and release storage connections."""
        await self.gate.close()


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
    return RequestView(
        method=scope.get("method", "GET"),
        path=scope.get("path", "/"),
        headers=headers,
        client_dn=tls.get("client_cert_name") if tls else None,
    )


async def _respond(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
