"""A Starlette gateway behind srtm: ``uvicorn starlette_app:app`` (from this folder).

POST /sr takes a Service Request for the back end; GET /health is left out of traffic
management (a load balancer's probe carries no User identity).
"""

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from traffic import build_policy, trusted_peers  # examples/traffic.py

from srtm.middleware import ASGITrafficManager


async def service_request(request: Request) -> JSONResponse:
    decision = request.scope["srtm.decision"]  # set by srtm for every admitted request
    body = await request.body()  # srtm never reads the body: the app does
    return JSONResponse({"accepted": True, "user": decision.user, "bytes": len(body)})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/sr", service_request, methods=["POST"]),
        Route("/health", health),
    ],
    middleware=[
        Middleware(
            ASGITrafficManager,
            policy=build_policy(),
            trusted_peers=trusted_peers(),
            exempt_paths={"/health"},
        )
    ],
)
