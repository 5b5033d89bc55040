"""The aggregate client: urgent first, FIFO within a class, Retry-After obeyed, nothing lost."""

from __future__ import annotations

import random

import pytest

from srtm.sim import Client, Priority, ScenarioError
from srtm.sim._client import ClientState, OpenLoopState, Recorder

CLASSES = [int(c) for c in Priority]  # prepayment .. bulk
P, BULK = CLASSES.index(Priority.PREPAYMENT), CLASSES.index(Priority.BULK)


def client(**spec: object) -> tuple[ClientState, Recorder]:
    rec = Recorder(len(CLASSES), 100, 0.0625)
    state = ClientState(Client(**spec), CLASSES, P, rec, random.Random(1), quantum=0.25)  # type: ignore[arg-type]
    return state, rec


def arrivals(prepayment: int = 0, bulk: int = 0) -> tuple[list[int], int]:
    counts = [0] * len(CLASSES)
    counts[P], counts[BULK] = prepayment, bulk
    return counts, prepayment + bulk


def test_top_ups_go_before_older_bulk() -> None:
    c, rec = client()
    c.arrive(*arrivals(bulk=10), now=0.0)
    assert c.offer(0.0, 100) == 10
    c.settle(10, 0, 1, 0.0, 0)  # all refused, Retry-After 1 s
    c.arrive(*arrivals(prepayment=3), now=0.5)
    assert c.offer(0.5, 100) == 0  # paused: the whole User waits
    assert c.offer(1.0, 100) == 13
    c.settle(13, 4, 1, 1.0, 0)  # four admitted: the three top-ups first, then one bulk
    assert rec.backlog[P] == 0
    assert rec.backlog[BULK] == 9
    assert rec.hist == {8: 3}  # the top-ups waited 0.5 s (8 x 1/16 s)
    assert c.priority_admitted == 3
    assert c.priority_wait_max == 0.5


def test_fifo_within_a_class_and_waits_measured() -> None:
    c, rec = client()
    c.arrive(*arrivals(bulk=5), now=0.0)
    c.settle(c.offer(0.0, 100), 0, 1, 0.0, 0)
    c.arrive(*arrivals(bulk=5), now=0.25)  # while paused
    n = c.offer(1.0, 100)
    c.settle(n, 6, 1, 1.0, 0)  # the five oldest and one of the newer
    assert rec.class_wait[BULK] == pytest.approx(5 * 1.0 + 1 * 0.75)
    assert c.size == 4


def test_the_line_caps_an_offer_and_the_rest_stays_queued() -> None:
    c, _ = client()
    c.arrive(*arrivals(bulk=30), now=0.0)
    assert c.offer(0.0, 12) == 12
    c.settle(12, 12, None, 0.0, 0)
    assert c.size == 18
    assert c.paused_until == 0.0  # nothing refused, no pause


def test_no_retry_after_means_backoff_with_full_jitter_growing() -> None:
    c, _ = client(backoff_initial=0.5, backoff_max=4.0)
    pauses = []
    now = 0.0
    c.arrive(*arrivals(bulk=1), now=now)
    for _ in range(6):
        now = max(now, c.paused_until)
        n = c.offer(now, 10)
        assert n == 1
        c.settle(n, 0, None, now, 0)
        pauses.append(c.paused_until - now)
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(0 <= p <= cap for p, cap in zip(pauses, ceilings, strict=True))
    now = max(now, c.paused_until)
    c.settle(c.offer(now, 10), 1, None, now, 0)  # success resets the backoff
    c.arrive(*arrivals(bulk=1), now=now)
    c.settle(c.offer(now, 10), 0, None, now, 0)
    assert c.paused_until - now <= 0.5


def test_retry_after_jitter_is_added_when_asked_for() -> None:
    c, _ = client(jitter=1.0, jitter_ratio=0.0)
    c.arrive(*arrivals(bulk=1), now=0.0)
    c.settle(c.offer(0.0, 10), 0, 2, 0.0, 0)
    assert 2.0 <= c.paused_until <= 3.0


def test_long_retry_afters_are_spread_but_short_ones_are_not() -> None:
    # srtm.client spreads a Retry-After by up to 10% of it; rounded down to the slice
    # (here a quarter second), a 1 s Retry-After is not delayed, a 60 s one is spread.
    pauses = {1: set(), 60: set()}
    for seed in range(40):
        rec = Recorder(len(CLASSES), 100, 0.0625)
        c = ClientState(Client(), CLASSES, P, rec, random.Random(seed), quantum=0.25)
        for retry in (1, 60):
            c.arrive(*arrivals(bulk=1), now=0.0)
            c.settle(c.offer(0.0, 10), 0, retry, 0.0, 0)
            pauses[retry].add(c.paused_until)
            c.paused_until = 0.0
    assert pauses[1] == {1.0}
    assert len(pauses[60]) > 10
    assert all(60.0 <= p <= 66.0 and (p * 4).is_integer() for p in pauses[60])


def test_aging_lets_old_bulk_overtake_a_new_top_up() -> None:
    # srtm.client's PriorityPolicy(aging=60): class x 60 s + arrival time orders the queue.
    c, rec = client(aging=60.0)
    c.arrive(*arrivals(bulk=1), now=0.0)
    c.settle(c.offer(0.0, 10), 0, 300, 0.0, 0)
    c.arrive(*arrivals(prepayment=1), now=299.0)
    c.settle(c.offer(300.0, 10), 1, 1, 300.0, 0)
    assert rec.backlog[BULK] == 0  # bulk queued 300 s ago ranked 240: before the top-up (299)
    assert rec.backlog[P] == 1


def test_without_priorities_the_queue_is_fifo() -> None:
    c, rec = client(priorities=False)
    c.arrive(*arrivals(bulk=2), now=0.0)
    c.settle(c.offer(0.0, 10), 0, 1, 0.0, 0)
    c.arrive(*arrivals(prepayment=2), now=0.5)
    c.settle(c.offer(1.0, 10), 2, 1, 1.0, 0)
    assert rec.backlog[BULK] == 0
    assert rec.backlog[P] == 2


def test_drain_times_after_a_mark() -> None:
    c, _ = client()
    c.arrive(*arrivals(prepayment=2, bulk=4), now=0.0)
    c.settle(c.offer(0.0, 10), 0, 1, 0.0, 0)
    c.mark(5.0)
    c.settle(c.offer(5.0, 10), 3, 1, 5.0, 0)
    c.settle(c.offer(6.0, 10), 3, 1, 6.0, 0)
    drained = c.drained()
    assert drained[P] == 5.0
    assert drained[BULK] == 6.0
    assert drained[CLASSES.index(Priority.ROUTINE)] == 5.0  # nothing was queued


def test_open_loop_offers_what_arrives_and_loses_what_is_refused() -> None:
    s = OpenLoopState()
    s.arrive([0, 0, 0, 0, 100], 100, 0.0)
    assert s.offer(0.0, 0) == 100
    s.settle(100, 30, 1, 0.0, 0)
    assert s.lost == 70
    assert s.offer(0.25, 0) == 0  # nothing queued, nothing paused
    assert s.paused_until == 0.0


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"max_rate": 0}, "Client.max_rate"),
        ({"aging": -1.0}, "Client.aging"),
        ({"jitter": float("nan")}, "Client.jitter"),
        ({"jitter_ratio": -0.1}, "Client.jitter_ratio"),
        ({"backoff_initial": 5.0, "backoff_max": 1.0}, "Client.backoff_initial"),
    ],
)
def test_bad_client_settings_are_refused(spec: dict[str, float], field: str) -> None:
    with pytest.raises(ScenarioError, match=field):
        Client(**spec)  # type: ignore[arg-type]
