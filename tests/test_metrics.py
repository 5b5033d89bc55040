"""Prometheus metrics of a real gate, read back through prometheus-client's own parser."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import prometheus_client
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from srtm import Gate, Identity, PolicyError, TrafficPolicy
from srtm.aio.gate import AsyncGate
from srtm.metrics import LATENCY_BUCKETS, OTHER, UNIDENTIFIED, UNKNOWN_POOL, GatewayMetrics

if TYPE_CHECKING:
    from srtm.gate import Decision
    from tests.conftest import RedisServer

ROOT = Path(__file__).resolve().parent.parent
ALLOCATIONS = {"a": 4.0, "b": 2.0}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def policy(**kwargs: object) -> TrafficPolicy:
    base: dict[str, object] = {"capacity": 10, "threshold": 0.8, "allocations": ALLOCATIONS}
    return TrafficPolicy(**(base | kwargs))  # type: ignore[arg-type]


def scrape(metrics: GatewayMetrics) -> Samples:
    """Every sample of the exposition, keyed by name and labels."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[s.name, frozenset(s.labels.items())] = s.value
    return out


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def requests(samples: Samples) -> Counter[tuple[str, str, str]]:
    """srtm_requests_total as (pool, user, outcome) -> count, zero series left out."""
    got: Counter[tuple[str, str, str]] = Counter()
    for labels, value in series(samples, "srtm_requests_total").items():
        d = dict(labels)
        if value:
            got[d["pool"], d["user"], d["outcome"]] = int(value)
    return got


def expected_outcome(d: Decision) -> str:
    """The outcome as the User saw it: the HTTP status and the refusal header."""
    if d.status == 200:
        return "shadow_refused" if d.shadow else "admitted"
    refused_by = dict(d.refusal_headers())["X-SRTM-Refused"]
    return {"capacity": "refused_capacity", "user-limit": "refused_user"}[refused_by]


def drive(
    gate: Gate, metrics: GatewayMetrics, users: list[str], seconds: int, per_second: int
) -> Counter[tuple[str, str, str]]:
    """Each User sends ``per_second`` requests a window, interleaved; what was sent."""
    sent: Counter[tuple[str, str, str]] = Counter()
    for second in range(seconds):
        gate.tick(now=float(second))
        for i in range(per_second):
            for user in users:
                d = gate.decide(Identity(user, "4.1"), now=second + i / per_second)
                metrics.observe(d, 0.0001)
                label = user if user in ALLOCATIONS else OTHER
                sent["default", label, expected_outcome(d)] += 1
    return sent


def test_counts_equal_the_requests_sent_per_outcome() -> None:
    gate = Gate(policy(), background=False)
    metrics = GatewayMetrics(gate)
    sent = drive(gate, metrics, ["a", "b", "x1", "x2"], seconds=4, per_second=30)
    for _ in range(7):
        metrics.unidentified("default")
    sent["default", UNIDENTIFIED, "unidentified"] += 7
    # The flood met every refusal there is, so every outcome is checked.
    assert {outcome for _, _, outcome in sent} == {
        "admitted",
        "refused_user",
        "refused_capacity",
        "unidentified",
    }
    got = requests(scrape(metrics))
    assert got == sent
    assert sum(got.values()) == 4 * 30 * 4 + 7


@settings(max_examples=60, deadline=None)
@given(
    shadow=st.booleans(),
    sends=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "x1", "x2", "x3"]),
            st.integers(min_value=1, max_value=12),  # requests in one decision
            st.floats(min_value=0.0, max_value=0.099),  # advance of the clock
        ),
        max_size=120,
    ),
)
def test_every_request_sent_is_counted_once(
    shadow: bool, sends: list[tuple[str, int, float]]
) -> None:
    gate = Gate(policy(shadow=shadow), background=False)
    metrics = GatewayMetrics(gate)
    sent: Counter[tuple[str, str, str]] = Counter()
    now, ticked = 0.0, -1
    for user, n, step in sends:
        now += step
        if math.floor(now / 0.25) > ticked:  # the governor's control period
            ticked = math.floor(now / 0.25)
            gate.tick(now=now)
        d = gate.decide(Identity(user, "4.1"), n, now=now)
        metrics.observe(d, 0.0001)
        label = user if user in ALLOCATIONS else OTHER
        if d.admitted:
            sent["default", label, "admitted"] += d.admitted
        if d.admitted < n:
            sent["default", label, expected_outcome(d)] += n - d.admitted
    got = requests(scrape(metrics))
    assert got == sent
    assert sum(got.values()) == sum(n for _, n, _ in sends)


def test_every_series_exists_at_zero_before_the_first_request() -> None:
    metrics = GatewayMetrics(Gate(policy(), background=False))
    found = series(scrape(metrics), "srtm_requests_total")
    users = {dict(labels)["user"] for labels in found}
    assert users == {"a", "b", OTHER, UNIDENTIFIED}
    assert len(found) == 3 * 4 + 1  # four outcomes per User label, one 401 counter
    assert set(found.values()) == {0.0}


def test_shadow_refusals_are_counted_apart() -> None:
    gate = Gate(policy(shadow=True), background=False)
    metrics = GatewayMetrics(gate)
    sent = drive(gate, metrics, ["a", "x1"], seconds=3, per_second=40)
    got = requests(scrape(metrics))
    assert got == sent
    assert got["default", "a", "shadow_refused"] > 0  # what shadow mode is for
    assert not any(o.startswith("refused") for _, _, o in got)  # nobody was refused


def test_a_partly_admitted_decision_counts_both_parts() -> None:
    gate = Gate(policy(), background=False)
    metrics = GatewayMetrics(gate)
    d = gate.decide(Identity("a", "4.1"), 50, now=0.5)
    metrics.observe(d, 0.001)
    assert 0 < d.admitted < 50
    got = requests(scrape(metrics))
    refused = got["default", "a", "refused_user"] + got["default", "a", "refused_capacity"]
    assert got["default", "a", "admitted"] == d.admitted
    assert refused == 50 - d.admitted
    count = series(scrape(metrics), "srtm_decision_duration_seconds_count")
    assert count == {frozenset({("pool", "default")}): 1.0}  # one decision, one timing


def test_labels_stay_bounded_under_thousands_of_identities() -> None:
    gate = Gate(policy(capacity=1000), background=False)
    metrics = GatewayMetrics(gate)
    drive(gate, metrics, ["a", "b", "x0"], seconds=1, per_second=1)
    before = scrape(metrics)
    identities = [f"supplier-{i}" for i in range(5000)]
    drive(gate, metrics, ["a", "b", *identities], seconds=3, per_second=1)
    gate.tick(now=3.0)  # the governor now holds all 5,000 in its demand
    assert len(gate.pool("default").governor.demand) > 5000
    assert gate.pool("default").governor.active
    after = scrape(metrics)
    assert {dict(labels)["user"] for labels in series(after, "srtm_requests_total")} == {
        "a",
        "b",
        OTHER,
        UNIDENTIFIED,
    }
    limits = series(after, "srtm_user_limit")
    assert {dict(labels)["user"] for labels in limits} == {"a", "b", OTHER}
    # The same series as before the 5,000 came, bar the limits TM now publishes.
    assert "srtm_user_limit" not in {name for name, _ in before}
    assert {k for k in after if k[0] != "srtm_user_limit"} == set(before)
    sent_by_others = 1 + 3 * 5000
    got = requests(after)
    assert sum(v for (_, user, _), v in got.items() if user == OTHER) == sent_by_others


def test_gauges_follow_capacity_and_traffic_management() -> None:
    gate = Gate(policy(capacity=30), background=False)
    metrics = GatewayMetrics(gate)
    pool = frozenset({("pool", "default")})
    first = scrape(metrics)
    assert series(first, "srtm_capacity") == {pool: 30.0}
    assert series(first, "srtm_budget") == {pool: 24.0}
    assert series(first, "srtm_traffic_management_active") == {pool: 0.0}
    assert series(first, "srtm_user_limit") == {}  # nobody has a limit while TM is off
    assert series(first, "srtm_store_degraded") == {frozenset(): 0.0}

    gate.set_capacity(20, now=0.0)
    lowered = scrape(metrics)
    assert series(lowered, "srtm_capacity") == {pool: 20.0}
    assert series(lowered, "srtm_budget") == {pool: 16.0}

    drive(gate, metrics, ["a", "b", "x1", "x2"], seconds=3, per_second=20)
    engaged = scrape(metrics)
    assert series(engaged, "srtm_traffic_management_active") == {pool: 1.0}
    limits = {dict(k)["user"]: v for k, v in series(engaged, "srtm_user_limit").items()}
    assert set(limits) == {"a", "b", OTHER}
    gov = gate.pool("default").governor
    assert limits["a"] == gov.limit("a")
    # Everyone asks for more than the budget: the shares add up to exactly the budget.
    # (allocations 4 + 2 within the budget 16, so the spare 10 is shared out too).
    assert math.isclose(sum(limits.values()), 16.0)
    assert limits["a"] > 4.0

    second = 3
    while gov.active and second < 60:  # silence: TM releases after its hold
        gate.tick(now=float(second))
        second += 1
    released = scrape(metrics)
    assert series(released, "srtm_traffic_management_active") == {pool: 0.0}
    assert series(released, "srtm_user_limit") == {}


@pytest.mark.redis
def test_store_degraded_follows_the_shared_store(private_redis: RedisServer) -> None:
    gate = Gate(policy(storage=private_redis.url, nodes=2), background=False)
    metrics = GatewayMetrics(gate)
    degraded = frozenset[tuple[str, str]]()
    try:
        assert gate.decide(Identity("a", "4.1"), now=0.5).admitted == 1
        assert series(scrape(metrics), "srtm_store_degraded") == {degraded: 0.0}
        private_redis.stop()
        assert gate.decide(Identity("a", "4.1"), now=1.0).degraded
        assert series(scrape(metrics), "srtm_store_degraded") == {degraded: 1.0}
        private_redis.start()
        gate.tick(now=60.0)  # the control loop's probe finds the store again
        assert not gate.decide(Identity("a", "4.1"), now=60.0).degraded
        assert series(scrape(metrics), "srtm_store_degraded") == {degraded: 0.0}
    finally:
        gate.close()


def test_latency_histogram_buckets_the_times_given() -> None:
    gate = Gate(policy(capacity=1000), background=False)
    metrics = GatewayMetrics(gate)
    times = [0.00003, 0.0002, 0.0002, 0.004, 0.3, 7.0]
    for t in times:
        metrics.observe(gate.decide(Identity("b", "4.1"), now=0.5), t)
    samples = scrape(metrics)
    buckets = {
        float(dict(k)["le"]): v
        for k, v in series(samples, "srtm_decision_duration_seconds_bucket").items()
    }
    assert sorted(buckets) == [*LATENCY_BUCKETS, math.inf]
    for bound, count in buckets.items():
        assert count == sum(1 for t in times if t <= bound), bound
    pool = frozenset({("pool", "default")})
    assert series(samples, "srtm_decision_duration_seconds_count") == {pool: len(times)}
    total = series(samples, "srtm_decision_duration_seconds_sum")[pool]
    assert math.isclose(total, sum(times))


def test_unidentified_requests_are_counted_in_a_bounded_pool_label() -> None:
    two = {"smets1": policy(), "smets2": policy(allocations={"b": 3.0})}
    metrics = GatewayMetrics(Gate(two, background=False))
    metrics.unidentified("smets2")
    metrics.unidentified(None)  # the pool was never chosen
    for i in range(50):
        metrics.unidentified(f"made-up-{i}")  # pool_of returned a pool that is not there
    got = requests(scrape(metrics))
    assert got == {
        ("smets2", UNIDENTIFIED, "unidentified"): 1,
        (UNKNOWN_POOL, UNIDENTIFIED, "unidentified"): 51,
    }
    single = GatewayMetrics(Gate(policy(), background=False))
    single.unidentified(None)  # one pool: it is that one
    assert requests(scrape(single)) == {("default", UNIDENTIFIED, "unidentified"): 1}


def test_named_is_per_pool() -> None:
    two = {"smets1": policy(), "smets2": policy(allocations={"b": 3.0})}
    gate = Gate(two, background=False)
    metrics = GatewayMetrics(gate)
    for pool in two:
        metrics.observe(gate.decide(Identity("a", "4.1", pool), now=0.5), 0.0001)
    got = requests(scrape(metrics))
    assert got == {("smets1", "a", "admitted"): 1, ("smets2", OTHER, "admitted"): 1}


def test_counts_are_exact_under_concurrent_threads() -> None:
    gate = Gate(policy(capacity=1e6), background=False)
    metrics = GatewayMetrics(gate)
    start = threading.Barrier(4)

    def work(user: str) -> None:
        start.wait()
        for i in range(2500):
            metrics.observe(gate.decide(Identity(user, "4.1"), now=0.5 + i / 1e4), 0.0001)

    threads = [threading.Thread(target=work, args=(u,)) for u in ("a", "b", "x1", "x2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = requests(scrape(metrics))
    assert got == {
        ("default", "a", "admitted"): 2500,
        ("default", "b", "admitted"): 2500,
        ("default", OTHER, "admitted"): 5000,
    }


async def test_the_async_gate_is_measured_alike() -> None:
    gate = AsyncGate(policy(), background=False)
    metrics = GatewayMetrics(gate)
    sent: Counter[tuple[str, str, str]] = Counter()
    try:
        for i in range(30):
            for user in ("a", "x1"):
                d = await gate.decide(Identity(user, "4.1"), now=0.5 + i / 100)
                metrics.observe(d, 0.0001)
                sent["default", user if user == "a" else OTHER, expected_outcome(d)] += 1
        assert requests(scrape(metrics)) == sent
        assert len({o for _, _, o in sent}) > 1  # admitted and refused both seen
    finally:
        await gate.close()


def test_render_speaks_openmetrics_when_asked() -> None:
    metrics = GatewayMetrics(Gate(policy(), background=False))
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b"srtm_requests_total{" in body
    text, plain = metrics.render()
    assert plain.startswith("text/plain")
    assert not text.endswith(b"# EOF\n")


def test_served_over_http_by_prometheus_clients_own_server() -> None:
    """The recipe of docs/operations.md: a real scrape over HTTP."""
    gate = Gate(policy(), background=False)
    metrics = GatewayMetrics(gate)
    metrics.observe(gate.decide(Identity("a", "4.1"), now=0.5), 0.0001)
    server, thread = prometheus_client.start_http_server(
        0, addr="127.0.0.1", registry=metrics.registry
    )
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
    families = {f.name: f for f in text_string_to_metric_families(body)}
    admitted = [
        s.value
        for s in families["srtm_requests"].samples
        if s.name == "srtm_requests_total" and s.labels["outcome"] == "admitted"
    ]
    assert sorted(admitted) == [0.0, 0.0, 1.0]  # a, b, _other: only a sent, once
    assert families["srtm_capacity"].samples[0].value == 10.0


def test_registers_on_any_registry_and_refuses_a_clash() -> None:
    gate = Gate(policy(), background=False)
    on_global = GatewayMetrics(gate, registry=prometheus_client.REGISTRY)
    try:
        assert on_global.registry is prometheus_client.REGISTRY
        body = prometheus_client.generate_latest().decode()
        assert 'srtm_capacity{pool="default"} 10.0' in body
        with pytest.raises(ValueError, match="unregister\\(\\) it first"):
            GatewayMetrics(gate, registry=prometheus_client.REGISTRY)
        other = GatewayMetrics(gate, registry=prometheus_client.REGISTRY, namespace="edge")
        other.unregister()
    finally:
        on_global.unregister()
    assert "srtm_capacity" not in prometheus_client.generate_latest().decode()
    # A private registry each by default: two gates' metrics never clash.
    assert GatewayMetrics(gate).registry is not GatewayMetrics(gate).registry


def test_a_namespace_renames_every_family() -> None:
    metrics = GatewayMetrics(Gate(policy(), background=False), namespace="edge")
    names = {name for name, _ in scrape(metrics)}
    assert names
    assert all(name.startswith("edge_") for name in names), names


def test_bad_input_gets_a_clear_error() -> None:
    gate = Gate(policy(), background=False)
    with pytest.raises(ValueError, match="namespace"):
        GatewayMetrics(gate, namespace="9-lives")
    # The collective's label can never clash with a named User: no policy can name it.
    for label in (OTHER, "_unidentified"):
        with pytest.raises(PolicyError, match="not a User ID"):
            policy(allocations={label: 1.0})
    metrics = GatewayMetrics(gate)
    d = gate.decide(Identity("a", "4.1"), now=0.5)
    for bad in (-0.001, math.nan):
        with pytest.raises(ValueError, match="duration"):
            metrics.observe(d, bad)
    assert requests(scrape(metrics)) == {}  # a refused observation counts nothing


def test_without_prometheus_client_the_error_names_the_extra() -> None:
    # sys.modules[name] = None is Python's own way to make an import fail.
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "from srtm._extras import MissingExtraError\n"
        "try:\n"
        "    import srtm.metrics\n"
        "except MissingExtraError as exc:\n"
        "    print(exc.extra, exc.missing, exc)\n"
        "else:\n"
        "    print('imported')\n"
    )
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    out = result.stdout
    assert out.startswith("prometheus ['prometheus_client']"), out
    assert "pip install 'srtm[prometheus]'" in out
