"""Serve one benchmark app with uvicorn: ``python -m bench._serve --app srtm --port P``.

``bare`` is the cheapest ASGI app (200 ok); ``srtm`` is the same app behind
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


def build(app: str, storage: str, lease: bool) -> Any:
    if app == "bare":
        return lifespan_aware
    policy = TrafficPolicy(capacity=1e9, storage=storage, lease=LeasePolicy() if lease else None)
    return ASGITrafficManager(lifespan_aware, policy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", choices=("bare", "srtm"), required=True)
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
