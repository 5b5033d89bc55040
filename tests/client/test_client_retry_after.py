"""Retry-After parsing and the wait strategy: a floor, jitter on top, backoff otherwise."""

from __future__ import annotations

import calendar
import email.utils
import math
import random
import statistics
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import tenacity
from hypothesis import example, given, settings
from hypothesis import strategies as st

from srtm.client import RetryAfterWait, VirtualClock, WaitDecision, parse_retry_after

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC, a whole second


def imf(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


# ---------------------------------------------------------------------------------------
# parse_retry_after


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("1", 1.0),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("\t3", 3.0),
        ("007", 7.0),
        ("86400", 86400.0),
    ],
)
def test_delta_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "-1",
        "+3",
        ".5",
        "1e3",
        "0x10",
        "1 2",
        "-1, -2",
        "soon, later",
        "٣",  # an Arabic-Indic digit: str.isdigit() says yes, HTTP says no
        "３",  # a full-width digit
        "inf",
        "NaN",
        "soon",
        "Sun, 06 Nov 1994 08:49:37 GMT+1",
        "Sun, 06 Nov 1994 08:49:37",
        "06 Nov 1994 08:49:37 GMT",
        "Sun, 30 Feb 2025 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 24:49:37 GMT",
        "Sun, 06 Nov 1994 08:60:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "sun, 06 nov 1994 08:49:37 gmt",
    ],
)
def test_unusable_values_are_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.5", 1.5),  # what some servers send: at least 1.5 s, not 1 and not a backoff
        ("0.5", 0.5),
        ("2.25 ", 2.25),
        ("1.0000000001", 1.000000001),  # rounded up at the nanosecond, never down
        ("1,2", 2.0),  # a list (a repeated field, joined): the largest member
        ("2, 3", 3.0),
        ("3, 2", 3.0),
        ("1.5, 1", 1.5),
        ("soon, 4", 4.0),  # unusable members are ignored, usable ones still a floor
    ],
)
def test_lenient_forms_are_floors(value: str, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(expected, abs=1e-12)
    assert parse_retry_after(value, now=NOW) >= expected  # type: ignore[operator]


def test_a_list_of_http_dates_keeps_each_dates_comma() -> None:
    value = f"{imf(NOW + 10)}, {imf(NOW + 30)}, 5"
    assert parse_retry_after(value, now=NOW) == pytest.approx(30.0)


def test_http_date_forms_all_mean_the_same_instant() -> None:
    target = NOW + 42
    t = datetime.fromtimestamp(target, UTC)
    imf_date = imf(target)
    rfc850 = t.strftime("%A, %d-%b-%y %H:%M:%S GMT")
    asctime = t.strftime("%a %b ") + f"{t.day:>2}" + t.strftime(" %H:%M:%S %Y")
    for value in (imf_date, rfc850, asctime):
        assert parse_retry_after(value, now=NOW) == pytest.approx(42.0), value


def test_http_date_in_the_past_means_now() -> None:
    assert parse_retry_after(imf(NOW - 3600), now=NOW) == 0.0


def test_rfc850_two_digit_year_is_never_far_in_the_future() -> None:
    # "94" read in 2023: 1994, not 2094 (RFC 9110 section 5.6.7).
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now=NOW) == 0.0


def test_absurd_digit_strings_are_forever_not_a_crash() -> None:
    assert parse_retry_after("9" * 5000, now=NOW) == math.inf
    assert parse_retry_after("0" * 5000 + "5", now=NOW) == 5.0


# ---------------------------------------------------------------------------------------
# The wait: Retry-After is a floor, jitter on top, a cap, backoff otherwise


def wait(rng: random.Random | None = None, **kwargs: float) -> RetryAfterWait:
    return RetryAfterWait(
        clock=VirtualClock(epoch=NOW), rng=rng if rng is not None else random.Random(7), **kwargs
    )


@settings(deadline=None)  # timing is not what is tested; a loaded CI box is slow
@given(seconds=st.integers(min_value=0, max_value=10**6), seed=st.integers(0, 2**32))
def test_delta_seconds_is_a_floor_with_bounded_jitter(seconds: int, seed: int) -> None:
    strategy = wait(random.Random(seed), cap=300.0, jitter=1.0, jitter_ratio=0.1)
    decision = strategy.decide(str(seconds), attempt=1)
    floor = min(seconds, 300.0)
    assert decision.source == "retry-after"
    assert decision.capped is (seconds > 300)
    assert decision.floor == floor
    assert floor <= decision.delay < floor + max(1.0, 0.1 * floor)


@settings(deadline=None)  # timing is not what is tested; a loaded CI box is slow
@given(
    offset=st.integers(min_value=-(10**6), max_value=10**6),
    form=st.sampled_from(["imf", "rfc850", "asctime"]),
    seed=st.integers(0, 2**32),
)
def test_http_date_is_a_floor(offset: int, form: str, seed: int) -> None:
    target = NOW + offset
    t = datetime.fromtimestamp(target, UTC)
    value = {
        "imf": imf(target),
        "rfc850": t.strftime("%A, %d-%b-%y %H:%M:%S GMT"),
        "asctime": t.strftime("%a %b ") + f"{t.day:>2}" + t.strftime(" %H:%M:%S %Y"),
    }[form]
    decision = wait(random.Random(seed), cap=10**7).decide(value, attempt=1)
    assert decision.source == "retry-after"
    assert decision.delay >= max(0.0, offset)  # never before the date


@settings(deadline=None)  # timing is not what is tested; a loaded CI box is slow
@given(value=st.text(max_size=60), attempt=st.integers(1, 10**6), seed=st.integers(0, 2**32))
@example(value="-1", attempt=1, seed=0)
@example(value="1.5", attempt=3, seed=0)
@example(value="9" * 400, attempt=1, seed=0)
@example(value="Fri, 31 Dec 9999 23:59:59 GMT", attempt=1, seed=0)
@example(value="Thu, 01 Jan 0001 00:00:00 GMT", attempt=1, seed=0)
def test_any_text_gives_a_sane_wait(value: str, attempt: int, seed: int) -> None:
    strategy = wait(random.Random(seed), cap=300.0, backoff_max=30.0)
    decision = strategy.decide(value, attempt)
    assert math.isfinite(decision.delay)
    assert decision.delay >= 0.0
    assert decision.delay < 300.0 + 30.0 + 1.0  # cap plus the largest jitter
    requested = parse_retry_after(value, now=NOW)
    if requested is not None:  # a usable header is a floor, capped
        assert decision.delay >= min(requested, 300.0)
        assert decision.capped is (requested > 300.0)
    else:
        assert decision.source == "backoff"
        assert decision.delay <= strategy.backoff_ceiling(attempt)


@settings(deadline=None)  # timing is not what is tested; a loaded CI box is slow
@given(
    value=st.from_regex(
        r"\A[ \t]*(-?[0-9]{1,6}(\.[0-9]{1,3})?|[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} "
        r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT)[ \t]*\Z"
    ),
    seed=st.integers(0, 2**32),
)
def test_near_miss_values_never_crash_nor_go_early(value: str, seed: int) -> None:
    decision = wait(random.Random(seed)).decide(value, attempt=2)
    requested = parse_retry_after(value, now=NOW)
    assert decision.delay >= 0.0
    if requested is not None:
        assert decision.delay >= min(requested, 300.0)
    if "-" in value:
        assert decision.source == "backoff"  # a negative delay is not obeyed
    elif "." in value:  # a decimal is a floor (1.5 means at least 1.5 s)
        assert decision.source == "retry-after"
        assert decision.delay >= min(float(value), 300.0)


def test_absurd_value_is_capped_and_reported() -> None:
    decision = wait(cap=300.0).decide("86400", attempt=1)
    assert decision.capped
    assert decision.requested == 86400.0
    assert decision.floor == 300.0
    assert 300.0 <= decision.delay < 331.0


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10, 100, 10**9])
def test_backoff_is_full_jitter_under_an_exponential_cap(attempt: int) -> None:
    strategy = wait(backoff_initial=0.5, backoff_max=30.0)
    ceiling = min(30.0, 0.5 * 2.0 ** min(attempt - 1, 100))
    assert strategy.backoff_ceiling(attempt) == pytest.approx(ceiling)
    delays = [strategy.decide(None, attempt).delay for _ in range(2000)]
    assert all(0.0 <= d <= ceiling for d in delays)
    # Full jitter: spread over the whole range, not bunched at the top.
    assert min(delays) < 0.05 * ceiling
    assert max(delays) > 0.95 * ceiling


@pytest.mark.parametrize("bad", [-5.0, 1.0, 7.5, -0.0])
def test_a_misbehaving_random_source_cannot_make_a_wait_negative(bad: float) -> None:
    strategy = RetryAfterWait(clock=VirtualClock(epoch=NOW), rng=lambda: bad)
    assert strategy.decide("2", 1).delay >= 2.0
    assert 0.0 <= strategy.decide("garbage", 1).delay <= strategy.backoff_ceiling(1)


# ---------------------------------------------------------------------------------------
# Jitter: many clients throttled at once do not all come back at once


def test_many_clients_throttled_together_spread_out_on_return() -> None:
    # 2,000 independent clients (each its own random source), all told "Retry-After: 1"
    # at the same instant.
    returns = [
        RetryAfterWait(clock=VirtualClock(epoch=NOW), rng=random.Random(i)).decide("1", 1).delay
        for i in range(2000)
    ]
    assert min(returns) >= 1.0  # nobody early
    assert max(returns) - min(returns) > 0.9  # spread over (almost) a whole second
    assert statistics.pstdev(returns) > 0.25  # uniform over 1 s has sd 0.29
    # No 50 ms slot takes more than a modest share (all-at-once would put 100% in one).
    slots = Counter(int(r / 0.05) for r in returns)
    assert max(slots.values()) / len(returns) < 0.1


def test_jitter_grows_with_long_waits() -> None:
    returns = [wait(random.Random(i)).decide("120", 1).delay for i in range(500)]
    assert min(returns) >= 120.0
    assert max(returns) - min(returns) > 9.0  # up to 10% of 120 s


# ---------------------------------------------------------------------------------------
# As a plain tenacity wait strategy


def test_works_as_a_tenacity_wait_strategy() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(503, headers={"Retry-After": "not a number"}),
            httpx.Response(200),
        ]
    )
    slept: list[float] = []
    retrying = tenacity.Retrying(
        wait=wait(),
        retry=tenacity.retry_if_result(lambda r: r.status_code in (429, 503)),
        stop=tenacity.stop_after_attempt(5),
        sleep=slept.append,
    )
    response = retrying(lambda: next(answers))
    assert response.status_code == 200
    assert len(slept) == 2
    assert 3.0 <= slept[0] < 4.0  # floor 3, jitter under 1
    assert 0.0 <= slept[1] <= 1.0  # backoff after attempt 2: up to 0.5 * 2


def test_reads_retry_after_from_an_exception_carrying_a_response() -> None:
    request = httpx.Request("POST", "http://gateway.test/")
    response = httpx.Response(429, headers={"Retry-After": "5"}, request=request)
    error = httpx.HTTPStatusError("throttled", request=request, response=response)
    slept: list[float] = []
    retrying = tenacity.Retrying(
        wait=wait(), stop=tenacity.stop_after_attempt(2), sleep=slept.append, reraise=True
    )

    def fail() -> None:
        raise error

    with pytest.raises(httpx.HTTPStatusError):
        retrying(fail)
    assert 5.0 <= slept[0] < 6.0


def test_wait_decision_is_a_frozen_value() -> None:
    decision = wait().decide("1", 1)
    assert isinstance(decision, WaitDecision)
    with pytest.raises(AttributeError):
        decision.delay = 0.0  # type: ignore[misc]


def test_http_date_measured_from_the_clock_wall_time() -> None:
    clock = VirtualClock(epoch=NOW)
    strategy = RetryAfterWait(clock=clock, rng=random.Random(1), jitter=0.0, jitter_ratio=0.0)
    value = imf(NOW + 10)
    assert strategy.decide(value, 1).delay == pytest.approx(10.0)
    clock.advance(4)
    assert strategy.decide(value, 1).delay == pytest.approx(6.0)


def test_dates_use_calendar_not_local_time() -> None:
    # A date is GMT whatever the machine's zone: compare with calendar.timegm.
    when = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
    ts = calendar.timegm(when.timetuple())
    value = imf(ts)
    assert parse_retry_after(value, now=ts - 100) == 100.0
    assert parse_retry_after(value, now=(when - timedelta(days=1)).timestamp()) == 86400.0
