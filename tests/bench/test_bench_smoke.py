"""Every benchmark script runs at a tiny size, so the scripts cannot rot.

The figures of a ``--quick`` run are noise; what is checked is that each script runs
to the end, writes its JSON, and reports what docs/benchmarks.md quotes from it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from bench import (
    _apps,
    client_dispatch,
    inprocess,
    leases,
    multinode,
    roundtrips,
    sim_day,
    state,
    throughput,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def run(main: Callable[[list[str]], dict[str, Any]], out: Path, *args: str) -> dict[str, Any]:
    result = main(["--quick", "--out", str(out), *args])
    assert result["machine"]["nproc"] >= 1
    return result


def written(out: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / f"{name}.json").read_text())
    return data


@pytest.mark.redis
def test_inprocess(tmp_path: Path, redis_url: str) -> None:
    result = run(inprocess.main, tmp_path, "--redis-url", redis_url)
    memory = written(tmp_path, "inprocess")["scenarios"]["memory/admitted"]
    names = ["asgi bare", "asgi floor", "srtm asgi", "srtm wsgi"]
    names += [peer for peer in ("slowapi", "flask-limiter") if _apps.installed(peer)]
    for name in names:
        assert memory["variants"][name]["per_request_us"] > 0
    assert {"memory/admitted", "redis/admitted", "redis/refused"} <= set(result["scenarios"])
    assert all("met" in row for row in memory["targets"])


@pytest.mark.redis
def test_roundtrips(tmp_path: Path, redis_url: str) -> None:
    result = run(roundtrips.main, tmp_path, "--redis-url", redis_url)
    admitted = result["scenarios"]["admitted"]
    assert admitted["srtm sync"]["round_trips_per_decision"] == pytest.approx(1.0, abs=0.05)
    assert result["scenarios"]["refused"]["srtm async"]["round_trips_per_decision"] < 0.05
    assert written(tmp_path, "roundtrips")["targets"]


@pytest.mark.redis
def test_leases(tmp_path: Path, redis_url: str) -> None:
    result = run(leases.main, tmp_path, "--redis-url", redis_url)
    configs = result["scenarios"]["held"]["configs"]
    assert configs["off"]["windows_over_cap"] == 0
    assert all(c["admitted_beyond_granted"] == 0 for c in configs.values())


@pytest.mark.redis
def test_throughput(tmp_path: Path, redis_url: str) -> None:
    result = run(throughput.main, tmp_path, "--redis-url", redis_url)
    variants = result["variants"]
    assert variants["h11: bare"]["rps"] > 0
    for stack in result["stacks"]:
        assert variants[f"{stack}: srtm memory"]["refused_share"] == 0
        assert variants[f"{stack}: srtm memory"]["errors"] == 0
        # the flood from one identity is refused but for its 100 SR/s
        assert variants[f"{stack}: srtm flood"]["refused_share"] > 0.5
    assert all("met" in row for row in written(tmp_path, "throughput")["targets"])


@pytest.mark.redis
def test_multinode(tmp_path: Path, redis_url: str) -> None:
    result = run(multinode.main, tmp_path, "--redis-url", redis_url)
    assert result["admitted"][0]["decisions"] > 0
    held = result["held"][0]
    assert held["max_granted_over_cap"] <= 1.0  # the hard cap holds across nodes


@pytest.mark.redis
def test_without_the_peers(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without slowapi and Flask-Limiter installed the scripts skip their variants."""
    monkeypatch.setattr(_apps, "installed", lambda peer: False)
    result = run(roundtrips.main, tmp_path, "--redis-url", redis_url, "-n", "20")
    assert "slowapi" not in result["scenarios"]["admitted"]
    result = run(inprocess.main, tmp_path, "--no-redis")
    assert "slowapi" not in result["scenarios"]["memory/admitted"]["variants"]


def test_client_dispatch(tmp_path: Path) -> None:
    result = run(client_dispatch.main, tmp_path)
    assert result["dispatch"]["sync"]["settled_per_s"] > 0
    assert result["top_up"]["sync"]["top_up_latency_ms"]["median"] > 0


def test_state(tmp_path: Path) -> None:
    result = run(state.main, tmp_path)
    from srtm.gate import IDLE_FORGET

    # 1,000 new identities a second: Users idle past the forget horizon are dropped, so at
    # most the last IDLE_FORGET seconds' identities (and one sweep's worth more) are held.
    for row in result["memory"]:
        assert row["users_held"] <= (IDLE_FORGET + 10) * 1000 < row["identities"], row
    assert result["recompute"]["tick_ms"]
    assert written(tmp_path, "state")["recompute"]["users"] == result["recompute"]["users"]


def test_sim_day(tmp_path: Path) -> None:
    # The tree compared with itself: the same results, and the fingerprint is of the
    # results (another control period recomputes differently, so it tells them apart).
    root = str(sim_day.ROOT)
    result = run(sim_day.main, tmp_path, "--baseline", root, "denial-of-service")
    entry = result["scenarios"]["denial-of-service"]
    assert entry["same_results"] is True
    assert entry["current"]["cpu_median_s"] > 0
    assert [row["met"] for row in entry["targets"]][1] is True
    faster = run(sim_day.main, tmp_path, "--control-period", "0.25", "denial-of-service")
    assert faster["control_period"] == 0.25
    other = faster["scenarios"]["denial-of-service"]["current"]["fingerprints"]
    assert other != entry["current"]["fingerprints"]
