"""``srtm inspect`` and ``srtm set-capacity`` against a store that real gates wrote."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from srtm import Gate, Identity, TrafficPolicy
from srtm._inspect import inspect_store, publish
from srtm._ops_cli import add_parsers, run
from tests.conftest import free_port


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="srtm")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def policy(url: str) -> TrafficPolicy:
    # A minute's window: the few seconds this test takes cross at most one boundary, so
    # the current and previous windows together hold every request it sent.
    return TrafficPolicy(capacity=100, allocations={"a": 40}, window=60, storage=url, nodes=2)


def both(pool: dict[str, object], user: str, what: str) -> int:
    windows = pool["windows"]
    assert isinstance(windows, dict)
    return sum(windows[w].get(user, {}).get(what, 0) for w in ("current", "previous"))


@pytest.mark.redis
def test_inspect_sums_what_every_node_counted(redis_db: str) -> None:
    one, two = Gate(policy(redis_db), background=False), Gate(policy(redis_db), background=False)
    try:
        for gate in (one, two):
            gate.tick()
        sent = {"a": (one, 5), "b": (two, 7)}
        for user, (gate, n) in sent.items():
            for _ in range(n):
                assert gate.decide(Identity(user, "4.1")).admitted == 1
        assert one.decide(Identity("a", "4.1")).admitted == 1  # a on both nodes
        out = io.StringIO()
        assert run(parse("inspect", redis_db, "--json"), out=out) == 0
        report = json.loads(out.getvalue())
        assert report == inspect_store(redis_db)
        pool = report["pools"]["default"]
        assert pool["nodes"] == sorted([one.node, two.node])
        assert pool["lapsed_nodes"] == []
        assert pool["capacity"] is None  # nothing published: the policy's is in force
        assert pool["window"] == 60, report
        assert both(pool, "a", "offered") == 6
        assert both(pool, "a", "admitted") == 6
        assert both(pool, "b", "offered") == 7
        assert both(pool, "b", "admitted") == 7
        totals = pool["totals"]
        assert totals["current"]["admitted"] + totals["previous"]["admitted"] == 13
        # The table for a pipe: plain text, one row per User.
        table = io.StringIO()
        assert run(parse("inspect", redis_db, "--pool", "default"), out=table) == 0
        lines = table.getvalue().splitlines()
        assert lines[0].startswith("pool default: capacity policy's, shadow policy's")
        assert any(line.split()[0] == "b" for line in lines[2:4])
        # A capacity set from the command line is in force on the nodes at their next tick.
        said = io.StringIO()
        assert run(parse("set-capacity", redis_db, "40"), out=said) == 0
        assert "capacity 40 SR/s published" in said.getvalue()
        for gate in (one, two):
            gate.tick()
            assert gate.pool("default").governor.capacity == 40
        assert inspect_store(redis_db, "default")["pools"]["default"]["capacity"] == 40.0
        # A node that leaves cleanly is no longer listed, and not counted as lapsed.
        two.close()
        pool = inspect_store(redis_db)["pools"]["default"]
        assert pool["nodes"] == [one.node]
        assert pool["lapsed_nodes"] == []
    finally:
        one.close()
        two.close()


@pytest.mark.redis
def test_set_capacity_needs_a_pool_name_when_there_are_several(redis_db: str) -> None:
    gate = Gate({"smets1": policy(redis_db), "smets2": policy(redis_db)}, background=False)
    gate.tick()
    assert run(parse("set-capacity", redis_db, "10")) == 2
    assert publish(redis_db, capacity=10, pool="smets2") == ("smets2", 1)
    gate.tick()
    assert gate.pool("smets2").governor.capacity == 10
    assert gate.pool("smets1").governor.capacity == 100
    with pytest.raises(ValueError, match="finite"):
        publish(redis_db, capacity=float("nan"), pool="smets1")
    gate.close()


def test_bad_arguments_and_unreachable_stores(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("set-capacity", "redis://127.0.0.1:1", "-5")
    assert exited.value.code == 2
    assert run(parse("inspect", "memory://")) == 1
    assert "shared Redis store" in capsys.readouterr().err
    down = f"redis://127.0.0.1:{free_port()}"
    assert run(parse("inspect", down)) == 1
    assert "error" in capsys.readouterr().err
    assert run(parse("set-capacity", down, "5", "--pool", "default")) == 1
