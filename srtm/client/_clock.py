"""Time for the client: the system clock, or a virtual one for tests.

Every timing decision (pauses, pacing, backoff, deadlines) is made by the I/O-free core
against a ``Clock``. The drivers only wait. With a ``VirtualClock`` they do not wait at
all: when nothing is in flight and the next event is a time, the driver moves the clock
to it. So tests of Retry-After, jitter and pacing run in microseconds and are exact, the
way stamina's testing mode removes sleeps.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "VirtualClock"]


@runtime_checkable
class Clock(Protocol):
    """Monotonic time for intervals, wall time for HTTP dates."""

    @property
    def virtual(self) -> bool:
        """True when waiting means moving the clock rather than sleeping."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def time(self) -> float:
        """Seconds since the epoch (to compare with an HTTP-date ``Retry-After``)."""
        ...

    def advance_to(self, when: float) -> None:
        """Virtual clocks jump to ``when`` (monotonic); the system clock ignores this."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``time.time``."""

    __slots__ = ()

    @property
    def virtual(self) -> bool:
        return False

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def advance_to(self, when: float) -> None:
        del when  # real time passes on its own


class VirtualClock:
    """A clock that moves only when told to, or when the client would otherwise wait.

    ``epoch`` is the wall time at monotonic zero: ``time() == epoch + monotonic()``.
    Thread-safe; it never goes back.
    """

    __slots__ = ("_epoch", "_lock", "_now")

    def __init__(self, *, start: float = 0.0, epoch: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._epoch = float(epoch)
        self._lock = threading.Lock()

    @property
    def virtual(self) -> bool:
        return True

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._epoch + self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (never back)."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds!r})")
        with self._lock:
            self._now += seconds

    def advance_to(self, when: float) -> None:
        with self._lock:
            self._now = max(self._now, float(when))
