"""The WSGI middleware in front of a real Flask app served by waitress."""

from __future__ import annotations

import httpx
import pytest
from flask import Flask, request

from srtm import TrafficPolicy
from srtm.middleware import WSGITrafficManager
from tests.middleware import load
from tests.middleware.conftest import serve_wsgi
from tests.middleware.test_asgi import check_flood_outcome

POLICY = TrafficPolicy(capacity=100, threshold=0.8, allocations={"a": 40, "b": 30, "c": 10})


def flask_gateway() -> Flask:
    app = Flask("gateway")

    @app.post("/sr")
    def sr() -> dict[str, object]:
        decision = request.environ.get("srtm.decision")
        return {"ok": True, "user": request.environ.get("srtm.user"), "seen": bool(decision)}

    @app.get("/health")
    def health() -> dict[str, object]:
        return {"ok": True}

    return app


@pytest.mark.e2e
def test_flooder_is_throttled_and_others_keep_their_allocation() -> None:
    flask_app = flask_gateway()
    flask_app.wsgi_app = WSGITrafficManager(flask_app.wsgi_app, POLICY)  # type: ignore[method-assign]
    with serve_wsgi(flask_app) as base:
        tallies = load.run(base, seconds=6.0, version="3.2")  # before DUIS 4.1: 503
    check_flood_outcome(tallies["a"], tallies["b"], tallies["c"], expect_status=503)
    manager = flask_app.wsgi_app
    assert isinstance(manager, WSGITrafficManager)
    assert manager.gate.snapshot()["pools"]["default"]["users"]["c"]["refused_user"] > 0
    manager.close()


@pytest.mark.e2e
def test_identity_401_rate_limit_fields_and_exempt_paths() -> None:
    flask_app = flask_gateway()
    manager = WSGITrafficManager(flask_app.wsgi_app, POLICY, exempt_paths={"/health"})
    flask_app.wsgi_app = manager  # type: ignore[method-assign]
    with serve_wsgi(flask_app) as base, httpx.Client(base_url=base) as client:
        missing = client.post("/sr", content=b"<Request/>")
        ok = client.post("/sr", headers={"X-Service-User-ID": "a", "X-DUIS-Version": "4.1"})
        health = client.get("/health")
    assert missing.status_code == 401
    assert missing.json()["error"] == "unidentified"
    assert ok.status_code == 200
    assert ok.json() == {"ok": True, "user": "a", "seen": True}
    assert ok.headers["RateLimit-Policy"].startswith('"default";q=')
    assert ok.headers["RateLimit"].startswith('"default";r=')
    assert health.status_code == 200
    assert "RateLimit" not in health.headers
    assert set(manager.gate.snapshot()["pools"]["default"]["users"]) == {"a"}
    manager.close()


def test_body_is_never_read() -> None:
    class Untouchable:
        def read(self, *args: object) -> bytes:
            raise AssertionError("the middleware read wsgi.input")

        readline = readlines = read

    calls: list[str] = []

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        calls.append("app")
        return [b""]

    manager = WSGITrafficManager(app, POLICY, background=False)
    statuses: list[str] = []
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/sr", "wsgi.input": Untouchable()}
    body = manager(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["401 Unauthorized"]
    assert b"unidentified" in b"".join(body)
    assert calls == []
