"""Gateway apps the server tests run, importable by servers started as subprocesses.

``asgi`` (a Starlette app) and ``wsgi`` (a plain WSGI app) each sit behind srtm's
middleware with the same policy: User ``good`` has room to spare, ``flood`` almost
none, so a flooder is refused once traffic management engages while ``good`` is not.
Peers on loopback are the trusted front end. ``SRTM_TEST_CERT`` switches the WSGI app
to identity from the client certificate (the mutual-TLS test).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from srtm import TrafficPolicy, identify_by_client_certificate
from srtm.middleware import ASGITrafficManager, WSGITrafficManager

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from starlette.requests import Request
    from starlette.responses import Response

# Budget 25 SR/s: the flooder gets its 1 plus what good leaves; good (< 20) is never
# refused once traffic management is on. The hard cap (50 per 1 s window) is far above
# what the two admitted Users send, so it refuses nobody after the first window.
POLICY = TrafficPolicy(capacity=50, threshold=0.5, allocations={"good": 20, "flood": 1})
TRUSTED = ["127.0.0.1", "::1"]


async def _sr(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {"user": request.scope.get("srtm.user"), "bytes": len(body)},
        headers={"X-Gate": type(request.scope.get("srtm.gate")).__name__},
    )


def make_asgi() -> ASGITrafficManager:
    """A fresh Starlette gateway behind a fresh gate."""
    app = Starlette(routes=[Route("/sr", _sr, methods=["POST"])])
    return ASGITrafficManager(app, POLICY, trusted_peers=TRUSTED)


def _wsgi_sr(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    data = json.dumps({"user": environ.get("srtm.user"), "bytes": len(body)}).encode()
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("X-Gate", type(environ.get("srtm.gate")).__name__),
        ],
    )
    return [data]


def make_wsgi() -> WSGITrafficManager:
    """A fresh WSGI gateway behind a fresh gate (certificate identity with SRTM_TEST_CERT)."""
    if os.environ.get("SRTM_TEST_CERT"):
        return WSGITrafficManager(_wsgi_sr, POLICY, identify=identify_by_client_certificate())
    return WSGITrafficManager(_wsgi_sr, POLICY, trusted_peers=TRUSTED)


# What servers started as subprocesses import (one process, one gate).
asgi = make_asgi()
wsgi = make_wsgi()
