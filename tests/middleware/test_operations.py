"""What an operator wires into the middleware: metrics at a path, a refusal hook, and a
policy that refuses Users it does not name. Over real servers (uvicorn, waitress); the
exposition is read with prometheus-client's own parser."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from srtm import Decision, Gate, RequestView, TrafficPolicy
from srtm.aio.gate import AsyncGate
from srtm.metrics import GatewayMetrics
from srtm.middleware import ASGITrafficManager, WSGITrafficManager
from tests.middleware.conftest import serve_asgi, serve_wsgi

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

A, B = "90-B3-D5-1F-30-01-00-00", "90-B3-D5-1F-30-02-00-00"


def policy(**overrides: Any) -> TrafficPolicy:
    # Capacity 10 a second, threshold 0.5: a budget of 5 a window, so a User sending 20
    # back to back is held to about 5 a window (the whole budget while it is alone).
    fields: dict[str, Any] = {
        "capacity": 10,
        "threshold": 0.5,
        "allocations": {A: 2, B: 2},
        "default_allocation": 1,
    }
    fields.update(overrides)
    return TrafficPolicy(**fields)


async def asgi_ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def wsgi_ok(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def headers(user: str | None) -> dict[str, str]:
    out = {"X-DUIS-Version": "4.1"}
    if user is not None:
        out["X-Service-User-ID"] = user
    return out


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture(params=["asgi", "wsgi"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def serve(kind: str, **options: Any) -> Iterator[str]:
    if kind == "asgi":
        return serve_asgi(ASGITrafficManager(asgi_ok, policy(), trusted_peers=["*"], **options))
    return serve_wsgi(WSGITrafficManager(wsgi_ok, policy(), trusted_peers=["*"], **options))


def test_metrics_path_serves_counts_of_what_was_sent(kind: str) -> None:
    refusals: list[tuple[str, str, int]] = []
    lock = threading.Lock()

    def on_refusal(request: RequestView, decision: Decision) -> None:
        with lock:
            refusals.append((request.path, decision.user, decision.status))

    with (
        serve(kind, metrics_path="/metrics", on_refusal=on_refusal) as url,
        httpx.Client(base_url=url) as client,
    ):
        statuses = [client.post("/sr", headers=headers(A)).status_code for _ in range(20)]
        unidentified = client.post("/sr", headers=headers(None))
        scraped = client.get("/metrics")  # no identity: the path is exempt
    assert unidentified.status_code == 401
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    counts = samples(text, "srtm_requests_total")
    admitted = statuses.count(200)
    refused = statuses.count(429)
    assert admitted + refused == 20
    assert 0 < admitted < 20, statuses  # about 5 a window: 20 sent back to back overflow it
    assert counts.get((("outcome", "admitted"), ("pool", "default"), ("user", A))) == admitted
    refused_counted = sum(
        v
        for k, v in counts.items()
        if ("user", A) in k and dict(k)["outcome"].startswith("refused")
    )
    assert refused_counted == refused
    assert (
        counts[(("outcome", "unidentified"), ("pool", "default"), ("user", "_unidentified"))] == 1
    )
    latency = samples(text, "srtm_decision_duration_seconds_count")
    assert latency == {(("pool", "default"),): 20}
    # The hook saw exactly the refusals the client saw, with the request that caused them.
    assert sorted(refusals) == sorted([("/sr", A, 429)] * refused)


def test_openmetrics_when_the_scraper_asks_for_it(kind: str) -> None:
    with serve(kind, metrics_path="/internal/metrics") as url:
        answer = httpx.get(
            url + "/internal/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/openmetrics-text")
    assert answer.text.rstrip().endswith("# EOF")


def test_shadow_refusals_reach_the_hook_and_pass(kind: str) -> None:
    seen: list[bool] = []
    lock = threading.Lock()

    def on_refusal(request: RequestView, decision: Decision) -> None:
        with lock:
            seen.append(decision.shadow)

    options: dict[str, Any] = {"on_refusal": on_refusal}
    app: Any
    if kind == "asgi":
        app = ASGITrafficManager(asgi_ok, policy(shadow=True), trusted_peers=["*"], **options)
        server = serve_asgi(app)
    else:
        app = WSGITrafficManager(wsgi_ok, policy(shadow=True), trusted_peers=["*"], **options)
        server = serve_wsgi(app)
    with server as url, httpx.Client(base_url=url) as client:
        statuses = {client.post("/sr", headers=headers(A)).status_code for _ in range(20)}
    assert statuses == {200}  # shadow mode refuses nothing
    assert seen  # but the refusals it would have made were reported
    assert all(seen)


def test_a_failing_hook_is_logged_not_a_500(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    def on_refusal(request: RequestView, decision: Decision) -> None:
        raise RuntimeError("the alerting system is down")

    with serve(kind, on_refusal=on_refusal) as url, httpx.Client(base_url=url) as client:
        statuses = [client.post("/sr", headers=headers(A)).status_code for _ in range(20)]
    assert 429 in statuses
    assert set(statuses) <= {200, 429}
    assert any("on_refusal" in r.getMessage() for r in caplog.records)


def test_unknown_users_refused_when_the_policy_says_so(kind: str) -> None:
    strict = policy(unknown_users="refuse", default_allocation=0)
    app: Any
    if kind == "asgi":
        app = ASGITrafficManager(asgi_ok, strict, trusted_peers=["*"], metrics_path="/m")
        server = serve_asgi(app)
    else:
        app = WSGITrafficManager(wsgi_ok, strict, trusted_peers=["*"], metrics_path="/m")
        server = serve_wsgi(app)
    with server as url, httpx.Client(base_url=url) as client:
        named = client.post("/sr", headers=headers(B))
        stranger = client.post("/sr", headers=headers("90-B3-D5-1F-30-99-00-00"))
        text = client.get("/m").text
    assert named.status_code == 200
    assert stranger.status_code == 403
    assert stranger.json()["error"] == "unknown-user"
    # Counted against nobody: the stranger appears in no User's figures.
    assert app.gate.snapshot()["pools"]["default"]["other"]["offered"] == 0
    counts = samples(text, "srtm_requests_total")
    assert (
        counts[(("outcome", "unidentified"), ("pool", "default"), ("user", "_unidentified"))] == 1
    )


def test_metrics_must_be_for_the_middlewares_gate() -> None:
    other = GatewayMetrics(AsyncGate(policy(), background=False))
    with pytest.raises(ValueError, match="own gate"):
        ASGITrafficManager(asgi_ok, policy(), trusted_peers=["*"], metrics=other)
    gate = Gate(policy(), background=False)
    mine = GatewayMetrics(gate)
    manager = WSGITrafficManager(wsgi_ok, gate=gate, trusted_peers=["*"], metrics=mine)
    assert manager.metrics is mine
    with pytest.raises(ValueError, match="metrics_path"):
        WSGITrafficManager(wsgi_ok, policy(), trusted_peers=["*"], metrics_path="metrics")
    gate.close()
