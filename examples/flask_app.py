"""A Flask gateway behind srtm: ``waitress-serve flask_app:app`` (from this folder).

Or ``gunicorn flask_app:app``. With several workers, give them one Redis
(``SRTM_STORAGE=redis://...``, ``GATEWAY_NODES`` = the number of workers): with
``memory://`` each worker would count alone and admit its own capacity.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from traffic import build_policy, trusted_peers  # examples/traffic.py

from srtm.middleware import WSGITrafficManager

app = Flask(__name__)
app.wsgi_app = WSGITrafficManager(  # type: ignore[method-assign]
    app.wsgi_app, build_policy(), trusted_peers=trusted_peers(), exempt_paths={"/health"}
)


@app.post("/sr")
def service_request() -> dict[str, Any]:
    user = request.environ["srtm.user"]  # set by srtm for every admitted request
    return {"accepted": True, "user": user, "bytes": len(request.get_data())}


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
