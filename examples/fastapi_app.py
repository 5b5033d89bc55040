"""A FastAPI gateway behind srtm: ``uvicorn fastapi_app:app`` (from this folder)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from traffic import build_policy  # examples/traffic.py

from srtm.middleware import ASGITrafficManager

app = FastAPI()
app.add_middleware(ASGITrafficManager, policy=build_policy(), exempt_paths={"/health"})


@app.post("/sr")
async def service_request(request: Request) -> dict[str, Any]:
    decision = request.scope["srtm.decision"]  # who, which pool, what is left
    body = await request.body()
    return {"accepted": True, "user": decision.user, "bytes": len(body)}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
