"""The verdict: each check computed from measurements, passing and failing for the right reason."""

from __future__ import annotations

import json

import pytest

from srtm.demo._gateway import Counts, Sample
from srtm.demo._measure import percentile, tm_intervals
from srtm.demo._suppliers import Settled
from tests.demo.helpers import START, Run


def failed(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {c.name for c in report.checks if not c.passed}


def test_a_run_that_went_well_passes_with_its_figures() -> None:
    run = Run()
    report = run.analyse()
    assert failed(report) == set()
    assert report.passed
    f = report.figures
    assert f["well_behaved_share"] == 1.0
    assert f["runaway_offered_rate"] == 500
    assert f["runaway_admitted_rate"] == run.fair() == 66  # 160 - (36 + 28 + 20 + 10)
    assert f["runaway_fair_rate"] == pytest.approx(66)
    assert f["peak_admitted"] == 94 + 66
    assert f["topup_flood_p50"] == 0.02
    assert f["tm_engaged_at"] == 3.25
    assert f["tm_released_at"] == 9.0
    assert report.verdict.startswith("PASS: well-behaved Users had 100.0% of their requests")
    assert "D was held to 66 SR/s of the 500 it sent" in report.verdict


def test_a_refused_well_behaved_user_fails() -> None:
    run = Run()
    counts = run.counts()
    a = run.config.suppliers[0]
    counts[int(START) + 5][a.user_id] = Counts(offered=36, admitted=30, refused_429=6)
    report = run.analyse(counts=counts)
    assert failed(report) == {"well-behaved Users admitted"}
    assert report.verdict.startswith("FAIL: well-behaved Users admitted: ")
    assert "lowest: A 98.3%" in report.verdict


def test_a_runaway_let_through_fails() -> None:
    report = Run(runaway_admitted=100).analyse()  # 94 + 100 is within capacity
    assert failed(report) == {"D held to its fair share"}


def test_a_runaway_within_the_slack_passes() -> None:
    # 1.25 x 66 + 1 per window = 83.5: the gate works on estimates a quarter window old.
    assert Run(runaway_admitted=83).analyse().passed


def test_a_flood_too_weak_to_test_anything_fails() -> None:
    report = Run(flood_offered=80).analyse()
    assert "D pushed past its fair share" in failed(report)
    assert "load generator was too slow" in report.verdict


def test_a_window_over_capacity_fails() -> None:
    run = Run()
    counts = run.counts()
    b = run.config.suppliers[1]
    counts[int(START) + 1][b.user_id] = Counts(offered=150, admitted=150)
    report = run.analyse(counts=counts)
    assert "admitted total within capacity" in failed(report)


@pytest.mark.parametrize(
    ("tm", "why"),
    [
        (None, "never engaged during the flood"),
        ((1.0, 9.0), "on before the flood, at 1.0 s"),
        # On for the flood but never released within the run: not "for the incident only".
        ((3.25, 10.0), "still on when the run ended at 10 s, 3.0 s after the flood stopped"),
        ((7.5, 9.0), "on after the flood, at 7.5 s"),
    ],
)
def test_traffic_management_must_engage_for_the_incident_only(
    tm: tuple[float, float] | None, why: str
) -> None:
    report = Run(tm=tm).analyse()
    assert failed(report) == {"traffic management engaged for the incident only"}
    assert why in report.verdict


def test_traffic_management_released_after_the_flood_is_reported() -> None:
    report = Run(tm=(3.25, 9.0)).analyse()
    (check,) = [c for c in report.checks if c.name.startswith("traffic management")]
    assert check.passed
    assert check.detail == "off before the flood, on at 3.2 s, off again at 9.0 s"
    assert report.figures["tm_released_at"] == 9.0
    assert Run(tm=(3.25, 10.0)).analyse().figures["tm_released_at"] is None


def test_a_top_up_refused_once_fails() -> None:
    run = Run()
    settled = run.settled()
    i = next(i for i, x in enumerate(settled) if x.label == "B" and x.submitted - START >= 4)
    x = settled[i]
    settled[i] = Settled(x.label, x.variant, x.submitted, 1.4, 0.0, "response", 200, 2)
    report = run.analyse(settled=settled)
    assert failed(report) == {"top-ups never held back"}
    assert "159 of the well-behaved Users' 160 top-ups during the flood" in report.verdict


def test_slow_top_ups_get_a_note_but_are_not_judged_by_the_clock() -> None:
    report = Run(topup_latency=1.5).analyse()
    assert report.passed
    (note,) = report.notes
    assert "1500 ms at the 95th percentile" in note
    assert "none was refused" in note
    assert Run().analyse().notes == []


def test_an_sr_without_an_end_fails() -> None:
    run = Run()
    report = run.analyse(unsettled={"A": 1})
    assert failed(report) == {"every well-behaved SR answered"}
    assert "1 without an end" in report.verdict


def test_a_given_up_sr_fails() -> None:
    run = Run()
    settled = run.settled()
    settled[0] = Settled("A", "2.2", START, 3.0, 0.1, "error", None, 20)
    report = run.analyse(settled=settled)
    assert "every well-behaved SR answered" in failed(report)


def test_the_summary_is_json_with_every_window() -> None:
    report = Run().analyse()
    summary = json.loads(json.dumps(report.to_json()))
    assert summary["verdict"] == "PASS"
    assert summary["notes"] == []
    assert len(summary["windows"]) == 10
    assert summary["windows"][4]["users"]["D"] == [500, 66, 434, 0]
    assert summary["users"]["A"]["requests"]["refused_429"] == 0
    assert {c["name"] for c in summary["checks"]} >= {"admitted total within capacity"}


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(list(reversed(values)), 100) == 100.0


def test_tm_intervals_close_at_the_end() -> None:
    samples = [
        Sample(10 + t, on, 0.0, {}) for t, on in [(0, False), (1, True), (2, False), (3, True)]
    ]
    assert tm_intervals(samples, 10, 15) == [(1, 2), (3, 5)]
