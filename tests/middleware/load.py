"""Drive several Users against a live gateway: steady senders and one flooder."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class Tally:
    """What one User saw, with the wall time of every admitted request."""

    statuses: Counter[int] = field(default_factory=Counter)
    admitted_at: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    retry_after: list[str] = field(default_factory=list)
    refusal_bodies: list[dict[str, object]] = field(default_factory=list)
    rate_limit_seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sent: float, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            self.sent_at.append(sent)
            if response.status_code == 200:
                self.admitted_at.append(sent)
            else:
                self.retry_after.append(response.headers.get("Retry-After", ""))
                if response.headers.get("content-type") == "application/json":
                    self.refusal_bodies.append(response.json())
            if "ratelimit" in response.headers and "ratelimit-policy" in response.headers:
                self.rate_limit_seen += 1


def steady(base: str, user: str, rate: float, stop: threading.Event, tally: Tally) -> None:
    """Send ``rate`` SR/s, evenly paced, until ``stop``."""
    headers = {"X-Service-User-ID": user, "X-DUIS-Version": "4.1"}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        start = time.monotonic()
        sent = 0
        while not stop.is_set():
            due = start + sent / rate
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):  # pacing, not synchronisation
                break
            now = time.monotonic()
            tally.add(now, client.post("/sr", content=b"<Request/>"))
            sent += 1


def flood(base: str, user: str, stop: threading.Event, tally: Tally, version: str) -> None:
    """Send as fast as one connection allows until ``stop``."""
    headers = {"X-Service-User-ID": user, "X-DUIS-Version": version}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        while not stop.is_set():
            now = time.monotonic()
            tally.add(now, client.post("/sr", content=b"<Request/>"))


def run(base: str, seconds: float, *, flooders: int = 4, version: str = "4.1") -> dict[str, Tally]:
    """a at 30 SR/s, b at 20 SR/s, c flooding on ``flooders`` connections."""
    tallies = {"a": Tally(), "b": Tally(), "c": Tally()}
    stop = threading.Event()
    threads = [
        threading.Thread(target=steady, args=(base, "a", 30.0, stop, tallies["a"])),
        threading.Thread(target=steady, args=(base, "b", 20.0, stop, tallies["b"])),
        *(
            threading.Thread(target=flood, args=(base, "c", stop, tallies["c"], version))
            for _ in range(flooders)
        ),
    ]
    for thread in threads:
        thread.start()
    stop.wait(seconds)  # the length of the experiment
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    return tallies


def per_second(times: list[float], start: float, seconds: int) -> list[int]:
    """Counts of ``times`` in each whole second after ``start``."""
    counts = [0] * seconds
    for t in times:
        i = int(t - start)
        if 0 <= i < seconds:
            counts[i] += 1
    return counts
