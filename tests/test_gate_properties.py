"""Properties of the gate under arbitrary traffic, on an injected clock."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from srtm import Gate, Identity, TrafficPolicy

USERS = ["a", "b", "c", "d"]

traffic = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=6, allow_nan=False),  # when
        st.sampled_from(USERS),  # who
        st.integers(min_value=1, max_value=60),  # how many
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(
    traffic=traffic,
    capacity=st.floats(min_value=5, max_value=200),
    threshold=st.floats(min_value=0.3, max_value=1.0),
    allocations=st.lists(st.floats(min_value=0, max_value=80), min_size=4, max_size=4),
    ticks=st.lists(st.floats(min_value=0, max_value=6), max_size=30),
)
def test_admitted_total_never_exceeds_capacity_in_any_window(
    traffic: list[tuple[float, str, int]],
    capacity: float,
    threshold: float,
    allocations: list[float],
    ticks: list[float],
) -> None:
    policy = TrafficPolicy(
        capacity=capacity,
        threshold=threshold,
        allocations=dict(zip(USERS, allocations, strict=True)),
    )
    gate = Gate(policy, background=False)
    events = sorted([(t, "tick", "", 0) for t in ticks] + [(t, "sr", u, n) for t, u, n in traffic])
    admitted: Counter[int] = Counter()
    for now, kind, user, n in events:
        if kind == "tick":
            gate.tick(now=now)
            continue
        decision = gate.decide(Identity(user, "4.1"), n, now=now)
        assert 0 <= decision.admitted <= n
        if decision.admitted < n:
            assert decision.status in (429, 503)
            assert decision.retry_after is not None
            assert decision.retry_after >= 1
        else:
            assert decision.status == 200
        admitted[int(now // policy.window)] += decision.admitted
    assert all(count <= int(capacity * policy.window + 1e-9) for count in admitted.values())


@settings(max_examples=100, deadline=None)
@given(
    demand=st.lists(st.integers(min_value=0, max_value=40), min_size=4, max_size=4),
    allocations=st.lists(st.integers(min_value=0, max_value=40), min_size=4, max_size=4),
    flood_from=st.floats(min_value=0, max_value=3),
)
def test_within_allocation_is_never_refused_while_guarantees_fit(
    demand: list[int], allocations: list[int], flood_from: float
) -> None:
    """A User at or under its allocation is never refused, whatever the others do, as
    long as the allocations fit in the budget (the policy is not over-subscribed) and the
    gate has recomputed once since the traffic began (in the very first window of a
    gateway's life nothing is known of anyone's demand)."""
    capacity = 200.0
    if sum(allocations) > 0.8 * capacity:
        return
    gate = Gate(
        TrafficPolicy(capacity=capacity, allocations=dict(zip(USERS, allocations, strict=True))),
        background=False,
    )
    for second in range(5):
        for k in range(10):
            if k % 2 == 0:  # five recomputations a window
                gate.tick(now=second + k / 10)
            for user, want in zip(USERS, demand, strict=True):
                now = second + k / 10 + 0.01
                # a floods from flood_from on, whatever its allocation
                n = (2000 if user == "a" and now >= flood_from else want) // 10
                if not n:
                    continue
                decision = gate.decide(Identity(user, "4.1"), n, now=now)
                if second >= 1 and user != "a" and want <= allocations[USERS.index(user)]:
                    assert decision.admitted == n, (user, second, k, decision)


@settings(max_examples=200, deadline=None)
@given(
    # at least one request per window in the budget: smaller policies fail when built
    capacity=st.floats(min_value=1 / 0.3, max_value=5000),
    threshold=st.floats(min_value=0.3, max_value=1.0),
    nodes=st.integers(min_value=2, max_value=8),
    data=st.data(),
)
def test_fenced_figures_and_the_lapsed_shares_add_up_to_at_most_capacity(
    capacity: float, threshold: float, nodes: int, data: st.DataObject
) -> None:
    """A node on the store keeps the lapsed nodes' shares off its cap and budget: what it
    may admit plus what every lapsed node may admit locally never passes the cap."""
    missing = data.draw(st.integers(min_value=1, max_value=nodes - 1))
    policy = TrafficPolicy(
        capacity=capacity, threshold=threshold, allocations={"a": capacity / 4}, nodes=nodes
    )
    gate = Gate(policy, background=False)
    pool = gate.pool("default")
    full = gate.quota_for(pool, "a")
    local = gate.quota(pool, "a", degraded=True)  # what a cut-off node admits at most
    pool.missing = missing
    pool.quotas_epoch = -1
    fenced = gate.quota_for(pool, "a")
    assert fenced.cap + missing * local.cap <= full.cap
    assert fenced.budget + missing * local.budget <= full.budget
    assert fenced.limit <= fenced.cap
    assert fenced.guarantee <= fenced.cap
    assert fenced.budget <= fenced.cap
    gate.close()


@settings(max_examples=150, deadline=None)
@given(
    traffic=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=0.5, allow_nan=False),  # time since the last
            st.sampled_from(USERS),
            st.integers(min_value=1, max_value=30),
            st.sampled_from(["4.1", "3.2", None]),  # the DUIS version: 429 or 503
            st.booleans(),  # a recomputation first
        ),
        min_size=1,
        max_size=150,
    ),
    capacity=st.floats(min_value=5, max_value=200),
    shadow=st.booleans(),
)
def test_async_decide_now_decides_as_decide(
    traffic: list[tuple[float, str, int, str | None, bool]], capacity: float, shadow: bool
) -> None:
    """The ASGI fast path's decision without a coroutine (memory://) is the one ``await
    decide`` gives: two gates, the same clock readings, the same requests and ticks."""
    import asyncio

    from srtm.aio.gate import AsyncGate

    policy = TrafficPolicy(
        capacity=capacity, threshold=0.5, allocations={"a": 2, "b": 1}, shadow=shadow
    )
    now = [1000.0]
    fast = AsyncGate(policy, clock=lambda: now[0], background=False)
    general = AsyncGate(policy, clock=lambda: now[0], background=False)

    async def run() -> None:
        for step, user, n, version, tick in traffic:
            now[0] += step
            if tick:
                await fast.tick()
                await general.tick()
            identity = Identity(user, version)
            assert fast.decide_now(identity, n) == await general.decide(identity, n)
        assert {**fast.snapshot(), "node": ""} == {**general.snapshot(), "node": ""}

    asyncio.run(run())
