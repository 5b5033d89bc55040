"""ASGI entry point: ``uvicorn django_gateway.asgi:application`` (from the examples folder).

Django's ASGI handler does not speak the lifespan protocol, so srtm would never see the
server's shutdown and never close its gate (with Redis, its connections would be left to
the process's exit). ``with_lifespan`` answers lifespan itself and hands every HTTP
request to Django; srtm, outside it, closes the gate when the shutdown message passes.
Serve it with a server that sends lifespan events (uvicorn, hypercorn).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.core.asgi import get_asgi_application
from traffic import build_policy, trusted_peers  # examples/traffic.py

from srtm.middleware import ASGITrafficManager

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_gateway.settings")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

django_app = get_asgi_application()


async def with_lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """Django for HTTP; lifespan answered here, so the shutdown reaches srtm."""
    if scope["type"] != "lifespan":
        await django_app(scope, receive, send)
        return
    while True:
        message = await receive()  # srtm closes its gate as lifespan.shutdown passes
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ASGITrafficManager(
    with_lifespan, build_policy(), trusted_peers=trusted_peers(), exempt_paths={"/health"}
)
