"""Synthetic runs: what the gateway, sampler and clients would have recorded."""

from __future__ import annotations

from dataclasses import dataclass, field

from srtm.demo import DemoConfig
from srtm.demo._gateway import Counts, Sample
from srtm.demo._suppliers import Settled

START = 1_000_000.0  # a window boundary


@dataclass
class Run:
    """A run in which everything went as it should; tests spoil one thing at a time."""

    config: DemoConfig = field(default_factory=lambda: DemoConfig(duration=10))
    flood_offered: int = 500
    runaway_admitted: int | None = None  # None: its fair share
    topup_latency: float = 0.02
    tm: tuple[float, float] | None = (3.25, 9.0)  # seconds when TM was on

    def fair(self) -> int:
        cfg = self.config
        others = sum(s.rate for s in cfg.well_behaved)
        return round(cfg.budget - others)  # its guarantee plus all the spare

    def counts(self) -> dict[int, dict[str, Counts]]:
        cfg = self.config
        out: dict[int, dict[str, Counts]] = {}
        for k in range(round(cfg.duration)):
            row: dict[str, Counts] = {}
            for s in cfg.suppliers:
                n = round(s.rate)
                c = Counts(offered=n, admitted=n)
                if s.runaway and cfg.amok_start <= k and k + 1 <= cfg.amok_end:
                    admitted = (
                        self.fair() if self.runaway_admitted is None else self.runaway_admitted
                    )
                    c = Counts(
                        offered=self.flood_offered,
                        admitted=admitted,
                        refused_429=self.flood_offered - admitted,
                    )
                row[s.user_id] = c
            out[int(START) + k] = row
        return out

    def samples(self) -> list[Sample]:
        out = []
        for i in range(round(self.config.duration * 4)):
            t = i / 4
            on = self.tm is not None and self.tm[0] <= t < self.tm[1]
            out.append(Sample(START + t, on, 100.0, {}))
        return out

    def settled(self) -> list[Settled]:
        out = []
        for s in self.config.suppliers:
            for i in range(round(self.config.duration * 10)):
                latency = 2.5 if s.runaway else self.topup_latency
                out.append(
                    Settled(s.label, "2.2", START + i / 10, latency, 0.0, "response", 200, 1)
                )
        return out

    def analyse(self, **overrides: object):  # type: ignore[no-untyped-def]
        from srtm.demo._measure import analyse

        settled = self.settled()
        submitted: dict[str, int] = {}
        for x in settled:
            submitted[x.label] = submitted.get(x.label, 0) + 1
        kwargs: dict[str, object] = {
            "start": START,
            "counts": self.counts(),
            "samples": self.samples(),
            "settled": settled,
            "submitted": submitted,
            "unsettled": dict.fromkeys(submitted, 0),
        }
        kwargs.update(overrides)
        return analyse(self.config, **kwargs)  # type: ignore[arg-type]
