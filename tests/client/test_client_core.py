"""The I/O-free core, step by step on a virtual clock: every decision, exactly."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from srtm.client import (
    AttemptsExhaustedError,
    ClientClosedError,
    DeadlineExceededError,
    OutcomeUnknownError,
    Priority,
    PriorityPolicy,
    RefusalRule,
    RetryAfterTooLongError,
    RetryBudgetExhaustedError,
    RetryPolicy,
    RetryScheduled,
    ServiceRequest,
    SRSettled,
    UserPaused,
    VirtualClock,
)
from srtm.client._base import ClientCore, Dispatch, Finished, Kind, Wait, _Entry, classify

from .helpers import sr

if TYPE_CHECKING:
    from srtm.client._refusal import Verdict

REFUSED = {"X-SRTM-Refused": "user-limit"}


class Handle:
    """A stand-in for a future."""

    def __init__(self) -> None:
        self.cancelled = False


def make_core(clock: VirtualClock, **kwargs: Any) -> ClientCore[Handle]:
    options: dict[str, Any] = {
        "priorities": PriorityPolicy(),
        "retry": RetryPolicy(),
        "max_in_flight": 1,
        "rate": None,
        "follow_rate_limit": True,
        "pace_factor": 1.0,
        "rng": random.Random(3),
    }
    options.update(kwargs)
    return ClientCore(
        clock=clock,
        claim=lambda h, first: not h.cancelled,
        cancelled=lambda h: h.cancelled,
        **options,
    )


def response(status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers={k.replace("_", "-"): v for k, v in headers.items()})


def refused(retry_after: str = "2", status: int = 429) -> httpx.Response:
    return httpx.Response(status, headers={"Retry-After": retry_after, **REFUSED})


def dispatch(core: ClientCore[Handle]) -> _Entry[Handle]:
    action = core.next_action()
    assert isinstance(action, Dispatch), action
    return action.entry


def submit(core: ClientCore[Handle], *srs: ServiceRequest) -> list[_Entry[Handle]]:
    return [core.submit(s, Handle()) for s in srs]


def settled(core: ClientCore[Handle]) -> list[tuple[str, Any]]:
    done, _ = core.take_outbox()
    return [(s.outcome, s.value) for s in done]


def variants_in_dispatch_order(core: ClientCore[Handle], clock: VirtualClock) -> list[str]:
    order = []
    while True:
        action = core.next_action()
        if isinstance(action, Dispatch):
            order.append(action.entry.sr.variant)
            core.attempt_finished(action.entry, response())
        elif isinstance(action, Wait) and action.until is not None:
            clock.advance_to(action.until)
        else:
            return order


# ---------------------------------------------------------------------------------------
# Ordering


def test_urgent_classes_first_and_fifo_within_a_class(clock: VirtualClock) -> None:
    core = make_core(clock)
    variants = ["4.6.1", "11.2", "3.1", "2.2", "8.1.1", "4.3", "2.5", "4.17", "6.11"]
    for v in variants:
        core.submit(sr(v), Handle())
    assert variants_in_dispatch_order(core, clock) == [
        "2.2",
        "2.5",
        "4.3",
        "8.1.1",
        "3.1",
        "6.11",
        "4.6.1",
        "11.2",
        "4.17",
    ]


def test_aging_lets_an_old_low_priority_sr_go_first(clock: VirtualClock) -> None:
    core = make_core(clock, priorities=PriorityPolicy(aging=10.0))
    submit(core, sr("3.1"))  # routine, key 3 * 10 + 0 = 30
    clock.advance(29.0)
    submit(core, sr("2.2"))  # prepayment, key 0 + 29 = 29: still first
    clock.advance(2.0)
    submit(core, sr("2.5"))  # prepayment, key 31: after the routine SR now
    assert variants_in_dispatch_order(core, clock) == ["2.2", "3.1", "2.5"]


def test_without_aging_priority_is_strict(clock: VirtualClock) -> None:
    core = make_core(clock, priorities=PriorityPolicy(aging=None))
    submit(core, sr("4.6.1"))
    clock.advance(10**6)
    submit(core, sr("2.2"))
    assert variants_in_dispatch_order(core, clock) == ["2.2", "4.6.1"]


def test_an_sr_priority_overrides_its_variant(clock: VirtualClock) -> None:
    core = make_core(clock)
    submit(core, sr("2.2"), sr("4.6.1", priority=-1))
    assert variants_in_dispatch_order(core, clock) == ["4.6.1", "2.2"]


# ---------------------------------------------------------------------------------------
# Bulk is held to a share so urgent SRs find room


def test_bulk_holds_at_most_its_share_of_in_flight_slots(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=4, priorities=PriorityPolicy(bulk_share=0.5))
    submit(core, *[sr("4.6.1") for _ in range(10)])
    first, second = dispatch(core), dispatch(core)
    assert first.bulk
    assert second.bulk
    assert core.next_action() == Wait(None)  # two slots left, kept for urgent work
    submit(core, sr("2.2"), sr("7.1"))
    assert dispatch(core).sr.variant == "2.2"
    assert dispatch(core).sr.variant == "7.1"
    core.attempt_finished(first, response())
    assert dispatch(core).bulk  # a bulk slot came free


def test_no_worker_is_woken_for_bulk_that_may_not_go(clock: VirtualClock) -> None:
    """``has_work_for_another``: only when a woken worker could send something."""
    core = make_core(clock, max_in_flight=4, priorities=PriorityPolicy(bulk_share=0.5))
    submit(core, *[sr("4.6.1") for _ in range(10)])
    assert core.has_work_for_another()
    first = dispatch(core)
    dispatch(core)
    assert not core.has_work_for_another()  # bulk holds its two slots: nothing may go
    submit(core, sr("2.2"))
    assert core.has_work_for_another()  # an urgent SR may take a free slot
    dispatch(core)
    assert not core.has_work_for_another()
    core.attempt_finished(first, response())
    assert core.has_work_for_another()  # a bulk slot came free


def test_an_sr_awaiting_a_retry_still_wakes_a_worker(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=4, priorities=PriorityPolicy(bulk_share=0.5))
    (urgent,) = submit(core, sr("2.2"))
    dispatch(core)
    submit(core, *[sr("4.6.1") for _ in range(3)])
    dispatch(core)
    dispatch(core)
    core.attempt_finished(urgent, refused("1"))  # back in the queue, after a pause
    assert core.stats().awaiting_retry == 1
    assert core.has_work_for_another()  # a worker must time the retry


def test_bulk_by_default_always_leaves_a_slot(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=2)  # bulk_share 0.8 of 2 slots: 1
    submit(core, *[sr("4.6.1") for _ in range(3)])
    dispatch(core)
    assert core.next_action() == Wait(None)
    submit(core, sr("2.2"))
    assert dispatch(core).sr.variant == "2.2"


def test_bulk_has_its_own_slower_pace(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=100, rate=10.0, priorities=PriorityPolicy(bulk_share=0.5))
    submit(core, *[sr("4.6.1") for _ in range(3)])
    times = []
    for _ in range(3):
        action = core.next_action()
        if isinstance(action, Wait):
            assert action.until is not None
            clock.advance_to(action.until)
            action = core.next_action()
        assert isinstance(action, Dispatch)
        times.append(clock.monotonic())
    assert times == pytest.approx([0.0, 0.2, 0.4])  # 5/s: half of 10/s


def test_urgent_srs_are_paced_at_the_full_rate(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=100, rate=10.0)
    submit(core, *[sr("2.2") for _ in range(3)])
    times = []
    for _ in range(3):
        action = core.next_action()
        if isinstance(action, Wait):
            assert action.until is not None
            clock.advance_to(action.until)
            action = core.next_action()
        assert isinstance(action, Dispatch)
        times.append(clock.monotonic())
    assert times == pytest.approx([0.0, 0.1, 0.2])


def test_the_pace_follows_the_gateway_policy(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=100, pace_factor=0.9)
    submit(core, *[sr("2.2") for _ in range(3)])
    entry = dispatch(core)
    core.attempt_finished(entry, response(RateLimit_Policy='"p";q=20;w=2'))
    assert core.pacer.rate == pytest.approx(9.0)
    dispatch(core)
    action = core.next_action()
    assert isinstance(action, Wait)
    assert action.until == pytest.approx(1 / 9.0)


def test_nothing_left_in_the_window_holds_until_it_resets(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=100)
    submit(core, *[sr("2.2") for _ in range(2)])
    entry = dispatch(core)
    core.attempt_finished(entry, response(RateLimit='"p";r=0;t=3'))
    assert core.next_action() == Wait(3.0)
    clock.advance_to(3.0)
    assert isinstance(core.next_action(), Dispatch)
    assert core.stats().throttle_pauses == 0  # pacing is not throttling


def test_pacing_can_be_turned_off(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=100, follow_rate_limit=False)
    submit(core, *[sr("2.2") for _ in range(3)])
    entry = dispatch(core)
    core.attempt_finished(entry, response(RateLimit_Policy='"p";q=1;w=1', RateLimit='"p";r=0;t=1'))
    assert isinstance(core.next_action(), Dispatch)
    assert isinstance(core.next_action(), Dispatch)


# ---------------------------------------------------------------------------------------
# Throttling pauses the whole User; the refused SR keeps its place


def test_a_refusal_pauses_the_whole_user_until_retry_after(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=4)
    submit(core, *[sr("4.6.1") for _ in range(3)])
    entry = dispatch(core)
    clock.advance(0.1)
    core.attempt_finished(entry, refused("2"))
    action = core.next_action()
    assert isinstance(action, Wait)
    assert action.until is not None
    assert 2.1 <= action.until < 3.1  # Retry-After from the refusal, plus jitter under 1 s
    assert core.paused_until == action.until
    clock.advance_to(action.until - 1e-6)
    assert isinstance(core.next_action(), Wait)  # never earlier
    clock.advance_to(action.until)
    assert dispatch(core) is entry  # the refused SR goes first: it keeps its place


def test_a_top_up_during_the_pause_goes_before_older_bulk(clock: VirtualClock) -> None:
    core = make_core(clock)
    bulk = submit(core, *[sr("4.6.1") for _ in range(3)])
    entry = dispatch(core)
    core.attempt_finished(entry, refused("5"))
    clock.advance(1.0)
    (top_up,) = submit(core, sr("2.2"))
    order: list[_Entry[Handle]] = []
    while len(order) < 4:
        action = core.next_action()
        if isinstance(action, Wait):
            assert action.until is not None
            clock.advance_to(action.until)
            continue
        assert isinstance(action, Dispatch)
        order.append(action.entry)
        core.attempt_finished(action.entry, response())
    assert order == [top_up, bulk[0], bulk[1], bulk[2]]


def test_refusals_in_flight_together_make_one_pause(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=3)
    entries = submit(core, *[sr("2.2") for _ in range(3)])
    for _ in entries:
        dispatch(core)
    for e in entries:
        core.attempt_finished(e, refused("1"))
    stats = core.stats()
    assert stats.throttle_pauses == 1
    assert stats.retries == 3
    assert stats.awaiting_retry == 3


def test_a_503_from_the_traffic_manager_pauses_like_a_429(clock: VirtualClock) -> None:
    core = make_core(clock)
    (entry,) = submit(core, sr("2.2"))
    dispatch(core)
    core.attempt_finished(entry, refused("4", status=503))
    assert core.paused_until >= 4.0
    assert settled(core) == []


def test_missing_retry_after_falls_back_to_backoff(clock: VirtualClock) -> None:
    core = make_core(clock, retry=RetryPolicy(backoff_initial=0.5))
    (entry,) = submit(core, sr("2.2"))
    dispatch(core)
    core.attempt_finished(entry, httpx.Response(429))
    assert 0.0 <= core.paused_until <= 0.5


# ---------------------------------------------------------------------------------------
# What is retried, what is not


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        (httpx.Response(200), Kind.FINAL),
        (httpx.Response(400), Kind.FINAL),
        (httpx.Response(404), Kind.FINAL),
        (httpx.Response(501), Kind.FINAL),
        (httpx.Response(429), Kind.REFUSED),
        (httpx.Response(503, headers=REFUSED), Kind.REFUSED),
        (httpx.Response(503, headers={"X-SRTM-Refused": "capacity"}), Kind.REFUSED),
        (httpx.Response(503), Kind.AMBIGUOUS),
        (httpx.Response(503, headers={"Retry-After": "2"}), Kind.REFUSED),  # the DCC's own
        (httpx.Response(503, headers={"Retry-After": "soon"}), Kind.REFUSED),  # backoff
        (httpx.Response(500, headers={"Retry-After": "2"}), Kind.AMBIGUOUS),
        (httpx.Response(429, headers={"Retry-After": "2"}), Kind.REFUSED),
        (httpx.Response(500), Kind.AMBIGUOUS),
        (httpx.Response(502), Kind.AMBIGUOUS),
        (httpx.Response(504), Kind.AMBIGUOUS),
        (httpx.ConnectError("refused"), Kind.UNREACHED),
        (httpx.ConnectTimeout("slow"), Kind.UNREACHED),
        (httpx.PoolTimeout("busy"), Kind.UNREACHED),
        (ValueError("bug"), Kind.FATAL),
    ],
)
def test_classification(outcome: httpx.Response | BaseException, kind: Kind) -> None:
    assert classify(outcome) is kind


def test_a_refusal_rule_can_be_changed_in_one_place() -> None:
    strict = RefusalRule(with_retry_after=frozenset(), markers=frozenset())
    assert classify(httpx.Response(503, headers={"Retry-After": "2"}), strict) is Kind.AMBIGUOUS
    teapot = RefusalRule(always=frozenset({429, 418}))
    assert classify(httpx.Response(418), teapot) is Kind.REFUSED

    class ByBody(RefusalRule):
        def verdict(self, response: httpx.Response) -> Verdict:
            return "refused" if b"throttled" in response.content else super().verdict(response)

    assert classify(httpx.Response(400, content=b"throttled"), ByBody()) is Kind.REFUSED
    assert classify(httpx.Response(400), ByBody()) is Kind.FINAL


@pytest.mark.parametrize("status", [200, 201, 204, 400, 404, 409, 418])
def test_a_final_answer_takes_the_fast_path_only_under_srtm_s_own_rule(
    clock: VirtualClock, status: int
) -> None:
    """A status srtm's rule calls final settles at once; a rule that overrides ``verdict``
    is still asked about every status, and one listing more statuses is followed."""

    class ByBody(RefusalRule):
        def verdict(self, response: httpx.Response) -> Verdict:
            return "refused" if b"throttled" in response.content else super().verdict(response)

    for rule, retried in [
        (RefusalRule(), False),
        (ByBody(), True),
        (RefusalRule(always=frozenset({429, status})), True),
        (RefusalRule(ambiguous=frozenset({status})), False),  # ambiguous: the caller's
    ]:
        core = make_core(clock, retry=RetryPolicy(refusal=rule))
        (entry,) = submit(core, sr("2.2"))
        dispatch(core)
        core.attempt_finished(entry, httpx.Response(status, content=b"throttled"))
        if retried:
            assert settled(core) == []
            assert core.stats().retries == 1
            assert core.paused_until > clock.monotonic()  # a refusal pauses the User
        else:
            ((outcome, value),) = settled(core)
            assert (outcome, value.status_code) == ("response", status)
            assert core.stats().retries == 0


def test_a_safe_to_repeat_sr_retries_an_ambiguous_answer_under_a_listed_status(
    clock: VirtualClock,
) -> None:
    rule = RefusalRule(ambiguous=frozenset({500, 418}))
    core = make_core(clock, retry=RetryPolicy(refusal=rule))
    (entry,) = submit(core, sr("4.18", safe_to_repeat=True))
    dispatch(core)
    core.attempt_finished(entry, httpx.Response(418))
    assert settled(core) == []
    assert core.stats().awaiting_retry == 1


def test_classes_remembered_by_variant_keep_each_sr_priority(clock: VirtualClock) -> None:
    core = make_core(clock)
    entries = submit(core, sr("4.8.1"), sr("4.8.1", priority=0), sr("4.8.1"), sr(" 2.2 "))
    assert [e.cls for e in entries] == [Priority.BULK, 0, Priority.BULK, Priority.PREPAYMENT]
    calls: list[str] = []

    def order(variant: str) -> int:
        calls.append(variant)
        return len(calls)  # a caller's function may change its mind: asked every time

    core = make_core(clock, priorities=PriorityPolicy(order=order))
    assert [e.cls for e in submit(core, sr("4.8.1"), sr("4.8.1"))] == [1, 2]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"always": {600}}, ValueError),
        ({"always": {True}}, ValueError),
        ({"ambiguous": 503}, TypeError),
        ({"markers": "x-srtm-refused"}, TypeError),
        ({"markers": {""}}, TypeError),
    ],
)
def test_a_bad_refusal_rule_says_what_is_wrong(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        RefusalRule(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_an_ambiguous_answer_goes_to_the_caller(clock: VirtualClock, status: int) -> None:
    core = make_core(clock)
    (entry,) = submit(core, sr("2.2"))
    dispatch(core)
    core.attempt_finished(entry, httpx.Response(status))
    ((outcome, value),) = settled(core)
    assert outcome == "response"
    assert value.status_code == status
    assert core.paused_until == float("-inf")


def test_an_ambiguous_answer_is_retried_if_safe_to_repeat(clock: VirtualClock) -> None:
    core = make_core(clock)
    (entry,) = submit(core, sr("4.18", safe_to_repeat=True))
    dispatch(core)
    core.attempt_finished(entry, httpx.Response(500))
    assert settled(core) == []
    assert core.paused_until == float("-inf")  # one SR's 500 does not pause the User
    assert core.stats().awaiting_retry == 1


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("no answer"),
        httpx.WriteTimeout("half sent"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.ReadError("reset"),
    ],
)
def test_no_answer_after_sending_is_outcome_unknown(
    clock: VirtualClock, error: httpx.TransportError
) -> None:
    core = make_core(clock)
    (entry,) = submit(core, sr("2.2"))
    dispatch(core)
    core.attempt_finished(entry, error)
    ((outcome, value),) = settled(core)
    assert outcome == "error"
    assert isinstance(value, OutcomeUnknownError)
    assert value.__cause__ is error
    assert value.sr is entry.sr


def test_unreachable_gateway_is_retried_with_a_user_pause(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=2)
    entries = submit(core, sr("2.2"), sr("2.2"))
    dispatch(core)
    core.attempt_finished(entries[0], httpx.ConnectError("refused"))
    assert settled(core) == []
    assert 0.0 <= core.paused_until <= 0.5  # backoff, full jitter, first attempt
    assert core.stats().throttle_pauses == 1
    assert core.stats().retries == 1
    assert isinstance(core.next_action(), Wait)  # the other SR waits too


def test_caller_errors_are_not_retried(clock: VirtualClock) -> None:
    core = make_core(clock)
    (entry,) = submit(core, sr("2.2"))
    dispatch(core)
    bug = httpx.UnsupportedProtocol("gopher://")
    core.attempt_finished(entry, bug)
    assert settled(core) == [("error", bug)]


# ---------------------------------------------------------------------------------------
# Giving up: deadlines, attempts, budget, absurd waits


def test_the_deadline_counts_the_coming_wait(clock: VirtualClock) -> None:
    core = make_core(clock)
    (entry,) = submit(core, sr("2.2", deadline=5.0))
    dispatch(core)
    core.attempt_finished(entry, refused("10"))
    ((outcome, error),) = settled(core)
    assert outcome == "error"
    assert isinstance(error, DeadlineExceededError)
    assert error.response is not None
    assert error.response.status_code == 429
    assert clock.monotonic() == 0.0  # given up at once, not after a pointless wait
    assert core.paused_until >= 10.0  # but the User still waits as told


def test_the_deadline_counts_a_pause_set_by_another_sr(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=2)
    a, b = submit(core, sr("2.2"), sr("2.2", deadline=5.0))
    dispatch(core), dispatch(core)
    core.attempt_finished(a, refused("30"))
    core.attempt_finished(b, refused("1"))
    ((_, error),) = settled(core)
    assert isinstance(error, DeadlineExceededError)
    assert error.sr is b.sr


def test_a_deadline_passing_in_the_queue_fails_the_sr(clock: VirtualClock) -> None:
    core = make_core(clock)
    first, late = submit(core, sr("2.2"), sr("4.6.1", deadline=3.0))
    dispatch(core)
    core.attempt_finished(first, refused("10"))
    action = core.next_action()
    assert action == Wait(3.0)  # wakes for the deadline, not only the pause
    clock.advance_to(3.0)
    core.next_action()
    ((_, error),) = settled(core)
    assert isinstance(error, DeadlineExceededError)
    assert error.sr is late.sr
    assert error.attempts == 0


def test_a_default_deadline_applies_to_srs_without_one(clock: VirtualClock) -> None:
    core = make_core(clock, retry=RetryPolicy(deadline=1.0))
    (entry,) = submit(core, sr("2.2"))
    dispatch(core)
    core.attempt_finished(entry, refused("2"))
    ((_, error),) = settled(core)
    assert isinstance(error, DeadlineExceededError)


def test_attempts_run_out(clock: VirtualClock) -> None:
    core = make_core(clock, retry=RetryPolicy(max_attempts=3))
    (entry,) = submit(core, sr("2.2"))
    for _ in range(3):
        action = core.next_action()
        while isinstance(action, Wait):
            assert action.until is not None
            clock.advance_to(action.until)
            action = core.next_action()
        assert isinstance(action, Dispatch)
        core.attempt_finished(entry, refused("1"))
    ((_, error),) = settled(core)
    assert isinstance(error, AttemptsExhaustedError)
    assert error.attempts == 3
    assert error.response is not None


def test_the_retry_budget_stops_an_outage_multiplying_traffic(clock: VirtualClock) -> None:
    policy = RetryPolicy(budget_burst=2.0, budget_per_second=0.0, budget_ratio=0.0)
    core = make_core(clock, max_in_flight=10, retry=policy)
    entries = submit(core, *[sr("2.2") for _ in range(5)])
    for _ in entries:
        dispatch(core)
    for e in entries:
        core.attempt_finished(e, httpx.ConnectError("down"))
    errors = [value for outcome, value in settled(core)]
    assert len(errors) == 3  # two retries allowed, three SRs handed back
    assert all(isinstance(e, RetryBudgetExhaustedError) for e in errors)
    assert all(isinstance(e.__cause__, httpx.ConnectError) for e in errors)
    assert core.stats().retries == 2


def test_first_attempts_earn_retries(clock: VirtualClock) -> None:
    policy = RetryPolicy(budget_burst=100.0, budget_per_second=0.0, budget_ratio=0.5)
    core = make_core(clock, max_in_flight=10, retry=policy)
    core.budget._tokens = 0.0  # spent
    entries = submit(core, *[sr("2.2") for _ in range(4)])
    for _ in entries:
        dispatch(core)  # four first attempts: two retries earned
    for e in entries:
        core.attempt_finished(e, refused("1"))
    assert core.stats().retries == 2
    assert len(settled(core)) == 2


def test_an_absurd_retry_after_is_capped_and_the_sr_handed_back(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=2, retry=RetryPolicy(max_retry_after=60.0))
    a, b = submit(core, sr("2.2"), sr("2.2"))
    dispatch(core)
    core.attempt_finished(a, refused("86400"))
    ((_, error),) = settled(core)
    assert isinstance(error, RetryAfterTooLongError)
    assert error.retry_after == 86400.0
    assert error.cap == 60.0
    assert 60.0 <= core.paused_until < 67.0  # paused for the cap (+ jitter), not a day
    action = core.next_action()
    assert isinstance(action, Wait)
    clock.advance_to(core.paused_until)
    assert dispatch(core) is b


# ---------------------------------------------------------------------------------------
# Cancelling and closing


def test_a_cancelled_handle_is_never_sent(clock: VirtualClock) -> None:
    core = make_core(clock)
    a, b = submit(core, sr("2.2"), sr("2.2"))
    a.handle.cancelled = True
    core.forget(a)
    assert dispatch(core) is b
    assert core.stats().cancelled == 1


def test_a_cancelled_handle_is_not_retried(clock: VirtualClock) -> None:
    core = make_core(clock)
    (entry,) = submit(core, sr("2.2"))
    dispatch(core)
    entry.handle.cancelled = True
    core.attempt_finished(entry, refused("1"))
    assert settled(core) == [("cancelled", None)]
    assert core.stats().retries == 0


def test_closing_refuses_new_srs_and_finishes_when_drained(clock: VirtualClock) -> None:
    core = make_core(clock)
    (entry,) = submit(core, sr("2.2"))
    core.close(cancel=False)
    with pytest.raises(ClientClosedError):
        core.submit(sr("2.2"), Handle())
    assert dispatch(core) is entry
    assert core.next_action() == Wait(None)
    core.attempt_finished(entry, response())
    assert core.next_action() == Finished()


def test_closing_with_cancel_hands_back_what_was_not_sent(clock: VirtualClock) -> None:
    core = make_core(clock, max_in_flight=2)
    entries = submit(core, *[sr(v) for v in ("2.2", "2.5", "4.6.1", "4.17")])
    a, b = dispatch(core), dispatch(core)
    core.close(cancel=True)
    assert [s.variant for s in core.handed_back] == ["4.6.1", "4.17"]
    core.attempt_finished(a, response())  # in flight: its answer still counts
    core.attempt_finished(b, refused("1"))  # refused: not retried, handed back
    assert [s.variant for s in core.handed_back] == ["4.6.1", "4.17", "2.5"]
    outcomes = [o for o, _ in settled(core)]
    assert sorted(outcomes) == ["cancelled", "cancelled", "cancelled", "response"]
    assert core.next_action() == Finished()
    assert len(entries) == 4


# ---------------------------------------------------------------------------------------
# Reporting


def test_events_and_stats_tell_the_story(clock: VirtualClock) -> None:
    core = make_core(clock)
    entries = submit(core, sr("2.2"), sr("4.6.1"), sr("4.6.1"))
    assert core.stats().queued == {Priority.PREPAYMENT: 1, Priority.BULK: 2}
    first = dispatch(core)
    core.attempt_finished(first, refused("2"))
    _, events = core.take_outbox()
    assert [type(e) for e in events] == [UserPaused, RetryScheduled]
    paused = events[0]
    assert isinstance(paused, UserPaused)
    assert paused.status_code == 429
    assert paused.decision is not None
    assert paused.decision.raw == "2"
    stats = core.stats()
    assert stats.paused_for >= 2.0
    assert stats.throttle_pauses == 1
    assert stats.retries == 1
    assert variants_in_dispatch_order(core, clock) == ["2.2", "4.6.1", "4.6.1"]
    _, events = core.take_outbox()
    done = [e for e in events if isinstance(e, SRSettled)]
    assert [e.sr for e in done] == [e.sr for e in entries]
    assert done[0].attempts == 2
    assert done[0].queued_for == 0.0
    assert done[1].queued_for is not None
    assert done[1].queued_for >= 2.0  # waited out the pause
    stats = core.stats()
    assert stats.responses == 3
    assert stats.waited[Priority.BULK].count == 2
    assert stats.waited[Priority.BULK].max >= 2.0


def test_each_attempt_sends_the_same_request_id(clock: VirtualClock) -> None:
    core = make_core(clock)
    (entry,) = submit(core, sr("2.2", request_id="90-B3:00-11:42"))
    headers = core.headers_for(entry.sr)
    assert headers["x-request-id"] == "90-B3:00-11:42"
    assert headers["content-type"] == "application/xml"
