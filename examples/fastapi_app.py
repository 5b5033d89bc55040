"""A FastAPI gateway behind srtm: ``uvicorn fastapi_app:app`` (from this folder)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from traffic import build_policy, trusted_peers  # examples/traffic.py

from srtm.aio.gate import AsyncGate
from srtm.middleware import ASGITrafficManager

# Built first and handed in: add_middleware builds the middleware lazily, and the app
# holds the gate to read and steer it (snapshot(), set_capacity()).
gate = AsyncGate(build_policy())
app = FastAPI()
app.add_middleware(
    ASGITrafficManager, gate=gate, trusted_peers=trusted_peers(), exempt_paths={"/health"}
)


@app.post("/sr")
async def service_request(request: Request) -> dict[str, Any]:
    decision = request.scope["srtm.decision"]  # who, which pool, what is left
    body = await request.body()
    return {"accepted": True, "user": decision.user, "bytes": len(body)}


@app.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "ok", "store_degraded": gate.snapshot(users=False)["degraded"]}
