"""The gateway's RateLimit fields: read tolerantly, never a crash."""

from __future__ import annotations

import itertools

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srtm.client import RateLimitInfo, RateLimitPolicy, parse_ratelimit
from srtm.client._pacing import Pacer

NOW = 1_700_000_000.0


def parse(**fields: str) -> RateLimitInfo | None:
    headers = httpx.Headers({k.replace("_", "-"): v for k, v in fields.items()})
    return parse_ratelimit(headers, now=NOW)


# The draft's (draft-ietf-httpapi-ratelimit-headers) multi-policy example, verbatim.
DRAFT_POLICY = '"burst";q=100;w=60, "daily";q=1000;w=86400'


def test_the_drafts_multi_policy_example_keeps_every_policy() -> None:
    info = parse(RateLimit_Policy=DRAFT_POLICY, RateLimit='"daily";r=999;t=3600')
    assert info is not None
    assert info.policies == (
        RateLimitPolicy(name="burst", quota=100, window=60.0),
        RateLimitPolicy(name="daily", quota=1000, window=86400.0, remaining=999, reset=3600.0),
    )
    assert info.pace == pytest.approx(100 / 60)  # the burst window paces; daily is a budget
    assert (info.pool, info.quota, info.window) == ("burst", 100, 60.0)


def test_the_drafts_example_paces_at_the_burst_rate() -> None:
    pacer = Pacer(rate=None, follow_gateway=True, factor=1.0, bulk_share=1.0)
    pacer.observe(parse(RateLimit_Policy=DRAFT_POLICY, RateLimit='"daily";r=999;t=3600'), 0.0)
    assert pacer.rate == pytest.approx(100 / 60)  # not 1000/86400 (one SR every 86 s)
    now, sent = 0.0, []
    while len(sent) < 10:
        now = max(now, pacer.ready_at(now, bulk=False))
        pacer.on_send(now, bulk=False)
        sent.append(now)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert gaps == pytest.approx([0.6] * 9)


def test_a_spent_long_window_holds_until_it_renews() -> None:
    pacer = Pacer(rate=None, follow_gateway=True, factor=1.0, bulk_share=1.0)
    fields = parse(RateLimit_Policy=DRAFT_POLICY, RateLimit='"burst";r=40;t=30, "daily";r=1;t=5000')
    pacer.observe(fields, 0.0)
    assert pacer.ready_at(0.0, bulk=False) <= 0.0
    pacer.on_send(0.0, bulk=False)  # the day's last one
    assert pacer.ready_at(1.0, bulk=False) == 5000.0  # held until the daily window renews
    assert pacer.ready_at(5000.0, bulk=False) <= 5000.0


def test_x_ratelimit_triple_is_the_fallback() -> None:
    info = parse(X_RateLimit_Limit="60", X_RateLimit_Remaining="0", X_RateLimit_Reset="17")
    assert info == RateLimitInfo(pool=None, quota=60, window=None, remaining=0, reset=17.0)


def test_x_ratelimit_reset_as_an_epoch_time() -> None:
    # GitHub's form: the reset is a Unix time, not a number of seconds.
    info = parse(
        X_RateLimit_Limit="5000", X_RateLimit_Remaining="0", X_RateLimit_Reset=str(int(NOW) + 90)
    )
    assert info is not None
    assert info.reset == pytest.approx(90.0)


def test_x_ratelimit_triple_with_a_window() -> None:
    info = parse(X_RateLimit_Limit="10, 10;w=1", X_RateLimit_Remaining="4", X_RateLimit_Reset="1")
    assert info is not None
    assert info.pace == 10.0


def test_the_standard_fields_win_over_the_x_triple() -> None:
    info = parse(RateLimit_Policy='"a";q=5;w=1', X_RateLimit_Limit="100", X_RateLimit_Remaining="0")
    assert info is not None
    assert (info.quota, info.remaining) == (5, None)


def test_structured_field_form() -> None:
    info = parse(RateLimit_Policy='"smets2";q=40;w=1', RateLimit='"smets2";r=12;t=1')
    assert info == RateLimitInfo(pool="smets2", quota=40, window=1.0, remaining=12, reset=1.0)
    assert info.rate == 40.0


def test_window_longer_than_a_second() -> None:
    info = parse(RateLimit_Policy='"default";q=600;w=60')
    assert info is not None
    assert info.rate == 10.0
    assert info.remaining is None


def test_several_policies_the_most_restrictive_wins() -> None:
    info = parse(
        RateLimit_Policy='"burst";q=100;w=1, "sustained";q=3000;w=60',
        RateLimit='"burst";r=80;t=1, "sustained";r=0;t=42',
    )
    assert info is not None
    assert info.pool == "sustained"
    assert info.rate == 50.0
    assert (info.remaining, info.reset) == (0, 42.0)


def test_token_names_and_quoted_commas() -> None:
    info = parse(RateLimit_Policy='"a,b";q=5;w=1', RateLimit='"a,b";r=4;t=1')
    assert info is not None
    assert info.pool == "a,b"
    assert info.quota == 5


def test_older_triple() -> None:
    info = parse(RateLimit_Limit="100", RateLimit_Remaining="7", RateLimit_Reset="3")
    assert info == RateLimitInfo(pool=None, quota=100, window=None, remaining=7, reset=3.0)
    assert info.rate is None  # no window: no rate to pace by


def test_older_triple_with_a_policy_in_the_limit() -> None:
    info = parse(RateLimit_Limit="10, 10;w=1", RateLimit_Remaining="2", RateLimit_Reset="1")
    assert info is not None
    assert info.rate == 10.0


def test_older_dictionary_form() -> None:
    info = parse(RateLimit="limit=10, remaining=3, reset=2")
    assert info is not None
    assert (info.quota, info.remaining, info.reset) == (10, 3, 2.0)


def test_older_bare_policy() -> None:
    info = parse(RateLimit_Policy="20;w=2")
    assert info is not None
    assert info.rate == 10.0


@pytest.mark.parametrize(
    "fields",
    [
        {"RateLimit_Policy": '"p";q=-1;w=1'},
        {"RateLimit_Policy": '"p";q=abc;w=1'},
        {"RateLimit_Policy": '"p";q=10;w=0'},
        {"RateLimit_Policy": '"p";q=10;w=-5'},
        {"RateLimit_Policy": '"p";q=1e9999;w=1'},
        {"RateLimit": '"p";r=-3;t=1'},
        {"RateLimit": '"p";r=;t=1'},
        {"RateLimit_Remaining": "many"},
        {"RateLimit_Policy": '"unterminated;q=10;w=1'},
        {"RateLimit_Policy": ";;;,,,"},
    ],
)
def test_bad_values_are_ignored(fields: dict[str, str]) -> None:
    info = parse(**fields)
    assert info is None or (info.rate is None and info.remaining is None) or info.rate == 10.0


def test_nan_and_infinite_windows_are_ignored() -> None:
    assert parse(RateLimit_Policy='"p";q=10;w=nan') is not None  # quota alone is kept
    assert parse(RateLimit_Policy='"p";q=10;w=nan').rate is None  # type: ignore[union-attr]
    assert parse(RateLimit_Policy='"p";q=10;w=inf').rate is None  # type: ignore[union-attr]


def test_no_fields_is_none() -> None:
    assert parse(Content_Type="application/xml") is None


header_names = st.sampled_from(
    [
        "RateLimit",
        "RateLimit-Policy",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    ]
)
field_text = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    st.from_regex(r'\A("[a-z,;=]{0,5}"|[a-z0-9]{0,4})(;[qwrt]=[-0-9.a-z]{0,6}){0,4}\Z'),
)


@settings(deadline=None)  # timing is not what is tested; a loaded CI box is slow
@given(fields=st.dictionaries(header_names, field_text, max_size=5))
def test_any_header_values_never_crash(fields: dict[str, str]) -> None:
    info = parse_ratelimit(httpx.Headers(fields))
    if info is None:
        return
    for value in (info.quota, info.remaining):
        assert value is None or value >= 0
    for seconds in (info.window, info.reset):
        assert seconds is None or seconds >= 0
    assert info.rate is None or info.rate >= 0  # q=0 is a real answer: no quota
