"""Serve one benchmark app with uvicorn: ``python -m bench._serve --app srtm --port P``.

``bare`` is the cheapest ASGI app (200 ok); ``bare-fields`` the same with two fixed
header fields the size of srtm's RateLimit fields; ``srtm`` is the bare app behind
``ASGITrafficManager`` with traffic management inactive (capacity far above any load),
the real clock and the background recomputation, as in production.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn

from bench import _apps
from srtm import TrafficPolicy
from srtm.lease import LeasePolicy
from srtm.middleware import ASGITrafficManager


async def lifespan_aware(scope: Any, receive: Any, send: Any) -> None:
    """The bare app, answering lifespan messages as a real app would."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await _apps.bare_asgi(scope, receive, send)


_FIELDS = [
    (b"ratelimit-policy", b'"default";q=1600000000;w=1'),
    (b"ratelimit", b'"default";r=1599999999;t=1'),
]


async def bare_with_fields(scope: Any, receive: Any, send: Any) -> None:
    """The bare app answering with two RateLimit-sized header fields, fixed: what the
    server's HTTP layer charges for the fields srtm adds, without any decision."""

    async def send_more(message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], *_FIELDS]}
        await send(message)

    await lifespan_aware(scope, receive, send_more)


def build(app: str, storage: str, lease: bool) -> Any:
    if app == "bare":
        return lifespan_aware
    if app == "bare-fields":
        return bare_with_fields
    policy = TrafficPolicy(capacity=1e9, storage=storage, lease=LeasePolicy() if lease else None)
    return ASGITrafficManager(lifespan_aware, policy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", choices=("bare", "bare-fields", "srtm"), required=True)
    parser.add_argument("--storage", default="memory://")
    parser.add_argument("--lease", action="store_true")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("srtm.policy").setLevel(logging.ERROR)
    uvicorn.run(
        build(args.app, args.storage, args.lease),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        ws="none",
    )


if __name__ == "__main__":
    main()
