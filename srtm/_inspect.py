"""Read and steer a shared store from outside any gate: ``srtm inspect`` and ``set-capacity``.

Every gate on a shared store writes, each control period, its heartbeat (the pool's
``nodes`` sorted set, scored with the Redis server's clock) and the pool's window length
(the ``control`` hash), next to the windowed counters (:mod:`srtm.ledger`). So the store
alone tells an operator, per pool: the capacity and shadow mode published through the
control plane, which nodes are live, and what every User offered and had admitted in the
current and the previous window, summed over all nodes.

Publishing a capacity here is what :meth:`srtm.gate.GateCore.set_capacity` does on a
node: every running node applies it within one control period, and a node started
later takes it up at its first.
"""

from __future__ import annotations

import math
from typing import Any

from srtm._errors import StorageError
from srtm.ledger import (
    PUBLISH_SCRIPT,
    TOTAL,
    Control,
    decode_counts,
    decode_fields,
    redis_defaults,
    redis_keys,
    store_keys,
)

__all__ = ["inspect_store", "pools_in", "publish"]

#: A node whose last heartbeat is older than this (s) is shown as lapsed: the longest
#: a gate lets a heartbeat count (:func:`srtm.ledger.alive_ms`).
LIVE_WITHIN = 2.0


def _client(uri: str) -> Any:
    """The redis-py client of a ``limits`` storage URI (Redis, Cluster or Sentinel)."""
    from limits.storage import storage_from_string

    from srtm.ledger import built

    uri = uri.removeprefix("async+")
    if uri.split("://", 1)[0] not in {"redis", "rediss", "redis+cluster", "redis+sentinel"}:
        raise StorageError(uri, "inspect reads a shared Redis store (redis://, ...)")
    storage = built(uri, redis_defaults(), lambda: storage_from_string)
    return storage.get_connection()


def _flat(reply: Any) -> list[Any]:
    """redis-py's HGETALL dict as the flat list a script returns."""
    return [x for pair in reply.items() for x in pair]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pools_in(client: Any) -> list[str]:
    """Names of the pools whose gates have written to this store, sorted."""
    names = set()
    for key in client.scan_iter(match="srtm:{*}:control", count=1000):
        text = _text(key)
        names.add(text[len("srtm:{") : -len("}:control")])
    return sorted(names)


def _pool(client: Any, pool: str, now: float) -> dict[str, Any]:
    nodes_key, control_key = store_keys(pool)
    control = Control.parse(decode_fields(_flat(client.hgetall(control_key))))
    window = control.window or 1.0
    live: list[str] = []
    lapsed: list[str] = []
    for member, score in client.zrange(nodes_key, 0, -1, withscores=True):
        (live if now - float(score) / 1000 < LIVE_WITHIN else lapsed).append(_text(member))
    current = math.floor(now / window)
    windows: dict[str, dict[str, dict[str, int]]] = {}
    totals: dict[str, dict[str, int]] = {}
    for name, w in (("current", current), ("previous", current - 1)):
        offered_key, admitted_key = redis_keys(pool, w)
        offered = decode_counts(_flat(client.hgetall(offered_key)))
        admitted = decode_counts(_flat(client.hgetall(admitted_key)))
        total = admitted.pop(TOTAL, 0)
        windows[name] = {
            user: {"offered": offered.get(user, 0), "admitted": admitted.get(user, 0)}
            for user in sorted(offered.keys() | admitted.keys())
        }
        totals[name] = {"offered": sum(offered.values()), "admitted": total}
    return {
        "capacity": control.capacity,
        "shadow": control.shadow,
        "revision": control.rev,
        "window": window,
        "nodes": sorted(live),
        "lapsed_nodes": sorted(lapsed),
        "windows": windows,
        "totals": totals,
    }


def inspect_store(uri: str, pool: str | None = None) -> dict[str, Any]:
    """Per pool: published capacity and shadow, live nodes, per-User counts of two windows.

    ``{"pools": {NAME: {"capacity": c, "shadow": s, "nodes": [...], "windows":
    {"current": {USER: {"offered": n, "admitted": n}}, "previous": {...}}, ...}}}``.
    A capacity or shadow mode never published is ``None``: the nodes use their policy's.
    """
    client = _client(uri)
    try:
        seconds, micros = client.time()
        now = int(seconds) + int(micros) / 1e6  # the store's clock, as the heartbeats use
        names = [pool] if pool is not None else pools_in(client)
        return {"pools": {name: _pool(client, name, now) for name in names}}
    finally:
        client.close()


def publish(
    uri: str, *, capacity: float | None = None, shadow: bool | None = None, pool: str | None = None
) -> tuple[str, int]:
    """Publish a capacity and/or shadow mode for a pool; (pool, the new revision).

    Without ``pool``, the store's only pool (``default`` when none has written yet).
    """
    from srtm.identity import DEFAULT_POOL, valid_user_id

    fields: list[str] = []
    if capacity is not None:
        if not isinstance(capacity, (int, float)) or not (0 <= capacity < math.inf):
            raise ValueError(f"capacity must be a finite number >= 0, got {capacity!r}")
        fields += ["capacity", repr(float(capacity))]
    if shadow is not None:
        fields += ["shadow", "1" if shadow else "0"]
    if not fields:
        raise ValueError("nothing to publish: give a capacity or a shadow mode")
    if pool is not None and not valid_user_id(pool):
        raise ValueError(f"pool names are short tokens, got {pool!r}")
    client = _client(uri)
    try:
        if pool is None:
            found = pools_in(client)
            if len(found) > 1:
                raise ValueError(f"several pools in the store ({', '.join(found)}): name one")
            pool = found[0] if found else DEFAULT_POOL
        script = client.register_script(PUBLISH_SCRIPT)
        rev = int(script(keys=[store_keys(pool)[1]], args=fields))
        return pool, rev
    finally:
        client.close()
