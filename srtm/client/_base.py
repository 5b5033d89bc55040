"""The client's core: every decision, no I/O.

``ClientCore`` holds the queue, the pacer, the User's pause and the retry machinery,
and answers three questions for a driver (``ServiceRequestClient`` with threads,
``AsyncServiceRequestClient`` with asyncio): what to do next (send this SR, or wait
until a time or an event), what an attempt's outcome means (a final answer, an error
for the caller, or a retry after a pause), and what is left at shutdown. The drivers
repeat only the I/O and the waiting, the way httpx's ``Client`` and ``AsyncClient``
share a ``BaseClient``.

Retrying is tenacity's state machine, driven by hand: each SR has a ``RetryCallState``
and, after each attempt, ``Retrying.iter()`` decides (retry predicate, wait strategy,
stop rules). Where tenacity's own loop would sleep, the core instead pauses the User (for
a refusal) or defers the SR, and puts it back in its place in the queue. That is the one
retry layer.

Not thread-safe: a driver calls it under its lock, and does what it says outside it.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, NamedTuple, TypeVar, cast

import httpx
from tenacity import BaseRetrying, DoSleep, RetryCallState
from tenacity.retry import retry_base
from tenacity.stop import stop_base

from srtm.client._errors import (
    AttemptsExhaustedError,
    ClientClosedError,
    DeadlineExceededError,
    GaveUpError,
    OutcomeUnknownError,
    RetryAfterTooLongError,
    RetryBudgetExhaustedError,
)
from srtm.client._events import (
    ClientEvent,
    ClientStats,
    RetryScheduled,
    SRSettled,
    UserPaused,
    WaitStats,
)
from srtm.client._pacing import Pacer
from srtm.client._queue import SRQueue
from srtm.client._ratelimit import parse_ratelimit
from srtm.client._refusal import RefusalRule
from srtm.client._request import ServiceRequest
from srtm.client._retry import RetryBudget, RetryPolicy, WaitDecision

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Sequence

    from srtm.client._clock import Clock
    from srtm.client._priorities import PriorityPolicy

__all__ = ["ClientCore", "Dispatch", "Finished", "Kind", "Settlement", "Wait", "classify"]

logger = logging.getLogger("srtm.client")

H = TypeVar("H")

#: The header with which the gateway's traffic manager marks its own refusals.
REFUSED_HEADER = "x-srtm-refused"


class Kind(enum.Enum):
    """What an attempt's outcome means for retrying."""

    FINAL = "final"  # an answer: hand it to the caller
    REFUSED = "refused"  # 429, 503 with Retry-After or srtm's marker: pause the User
    UNREACHED = "unreached"  # the gateway was never reached: not processed, pause the User
    AMBIGUOUS = "ambiguous"  # may have been processed: retry only if safe to repeat
    FATAL = "fatal"  # the request could not be made: hand the error to the caller


#: Transport errors raised before a byte of the request left: the SR was not processed.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Transport errors after sending may have started: the gateway may have processed it.
_AMBIGUOUS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


_VERDICTS = {"refused": Kind.REFUSED, "ambiguous": Kind.AMBIGUOUS, "final": Kind.FINAL}
_DEFAULT_RULE = RefusalRule()


def classify(outcome: httpx.Response | BaseException, rule: RefusalRule = _DEFAULT_RULE) -> Kind:
    """Whether an outcome was provably not processed, final, or ambiguous."""
    if isinstance(outcome, httpx.Response):
        return _VERDICTS[rule.verdict(outcome)]
    if isinstance(outcome, _UNSENT):
        return Kind.UNREACHED
    if isinstance(outcome, OutcomeUnknownError):
        return Kind.AMBIGUOUS
    return Kind.FATAL


# ---------------------------------------------------------------------------------------
# What the core tells a driver


class Dispatch(NamedTuple, Generic[H]):
    """Send this SR now. (A named tuple: one is made per SR, and cheaply.)"""

    entry: _Entry[H]


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to send: wait until ``until`` (monotonic), or an event if None."""

    until: float | None


@dataclass(frozen=True, slots=True)
class Finished:
    """Closing, and nothing is left: the driver may stop."""


class Settlement(NamedTuple, Generic[H]):
    """Resolve a caller's handle: with a response, an error, or as cancelled.

    (A named tuple: one is made per SR, and cheaply.)
    """

    handle: H
    outcome: Literal["response", "error", "cancelled"]
    value: httpx.Response | BaseException | None


# ---------------------------------------------------------------------------------------
# One queued SR and its retry state


class _State(enum.Enum):
    QUEUED = "queued"
    IN_FLIGHT = "in flight"
    DONE = "done"


class _CallState(RetryCallState):
    """tenacity's per-call state, plus what the client's strategies need to see."""

    def __init__(self, retrying: BaseRetrying, entry: _Entry[Any]) -> None:
        super().__init__(retrying, fn=None, args=(), kwargs={})
        self.entry = entry
        self.now = 0.0
        self.kind = Kind.FINAL
        self.decision: WaitDecision | None = None
        self.stop_reason: type[GaveUpError] | None = None

    def note_wait(self, decision: WaitDecision) -> None:
        self.decision = decision


class _Entry(Generic[H]):
    __slots__ = (
        "attempts",
        "bulk",
        "cls",
        "deadline_at",
        "first_sent_at",
        "handle",
        "key",
        "last_response",
        "maybe_processed",
        "qtoken",
        "sr",
        "state",
        "status",
        "submitted_at",
    )

    def __init__(
        self,
        sr: ServiceRequest,
        handle: H,
        *,
        cls: int,
        key: tuple[float, int],
        bulk: bool,
        submitted_at: float,
        deadline_at: float | None,
    ) -> None:
        self.sr = sr
        self.handle = handle
        self.cls = cls
        self.key = key
        self.bulk = bulk
        self.submitted_at = submitted_at
        self.deadline_at = deadline_at
        self.qtoken = 0
        self.status = _State.QUEUED
        self.attempts = 0
        self.first_sent_at: float | None = None
        self.last_response: httpx.Response | None = None
        # An attempt got no clear answer (a timeout after sending, a dropped connection,
        # a 5xx): the gateway may have processed the SR, so it is never "unsent" again.
        self.maybe_processed = False
        # tenacity's state, made on the first outcome that might be retried: most SRs
        # get their answer at once and never need one.
        self.state: _CallState | None = None


# ---------------------------------------------------------------------------------------
# tenacity, driven by hand


class _Decider(BaseRetrying):
    """tenacity's decision machinery, without its loop: the client is the loop."""

    def __init__(self, **kwargs: Any) -> None:
        self._stats: dict[str, Any] = {}
        super().__init__(**kwargs)
        self.begin()

    @property
    def statistics(self) -> dict[str, Any]:
        # One dict for the client, not one per thread: the core is used under a lock
        # from whichever thread finished the attempt.
        return self._stats

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        raise TypeError("the client drives this object with iter(); it does not call functions")


class _RetryIfUnprocessed(retry_base):
    """Retry what the gateway provably did not process, or what is safe to repeat."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        state = cast(_CallState, retry_state)
        if state.kind in (Kind.REFUSED, Kind.UNREACHED):
            return True
        return state.kind is Kind.AMBIGUOUS and state.entry.sr.safe_to_repeat


class _StopRules(stop_base):
    """Stop when the wait is capped, the deadline would pass, attempts or budget run out.

    The budget is consulted last, so a token is spent only when a retry will happen.
    """

    def __init__(self, core: ClientCore[Any]) -> None:
        self.core = core

    def __call__(self, retry_state: RetryCallState) -> bool:
        state = cast(_CallState, retry_state)
        state.stop_reason = self.core._stop_reason(state)
        return state.stop_reason is not None


# ---------------------------------------------------------------------------------------
# The core


class ClientCore(Generic[H]):
    """Queueing, pacing, pausing and retry decisions for one User's client."""

    def __init__(
        self,
        *,
        priorities: PriorityPolicy,
        retry: RetryPolicy,
        max_in_flight: int,
        rate: float | None,
        follow_rate_limit: bool,
        pace_factor: float,
        clock: Clock,
        rng: random.Random | Callable[[], float] | None,
        claim: Callable[[H, bool], bool],
        cancelled: Callable[[H], bool],
    ) -> None:
        if isinstance(max_in_flight, bool) or max_in_flight < 1:
            raise ValueError(f"max_in_flight: must be at least 1, got {max_in_flight!r}")
        self.priorities = priorities
        self.retry = retry
        self.max_in_flight = max_in_flight
        self.clock = clock
        self._claim = claim
        self._cancelled = cancelled
        self.wait = retry.wait_strategy(clock=clock, rng=rng)
        self._decider = _Decider(
            retry=_RetryIfUnprocessed(),
            wait=self.wait,
            stop=_StopRules(self),
            retry_error_callback=self._give_up,
        )
        self.pacer = Pacer(
            rate=rate,
            follow_gateway=follow_rate_limit,
            factor=pace_factor,
            bulk_share=priorities.bulk_share,
        )
        now = clock.monotonic()
        self.budget = RetryBudget(
            ratio=retry.budget_ratio,
            per_second=retry.budget_per_second,
            burst=retry.budget_burst,
            now=now,
        )
        # Bulk SRs may hold at most this many in-flight slots; the rest stay free for
        # urgent ones (with a single slot, bulk may use it: there is nothing to share).
        self.bulk_slots = max(1, math.floor(priorities.bulk_share * max_in_flight))
        if priorities.bulk_share < 1.0 and max_in_flight > 1:
            self.bulk_slots = min(self.bulk_slots, max_in_flight - 1)
        self._queue: SRQueue[_Entry[H]] = SRQueue()
        self._deadlines: list[tuple[float, int, _Entry[H]]] = []
        self._seq = itertools.count()
        self._pause_until = -math.inf
        self._in_flight = 0
        self._bulk_in_flight = 0
        self._closing = False
        self._cancelling = False
        self._aborted: BaseException | None = None
        self.handed_back: list[ServiceRequest] = []
        #: SRs that ended sent but unanswered (``OutcomeUnknownError``): never handed back.
        self.outcome_unknown: list[ServiceRequest] = []
        self._settled: list[Settlement[H]] = []
        self._events: list[ClientEvent] = []
        self._counts = dict.fromkeys(
            (
                "submitted",
                "attempts",
                "responses",
                "errors",
                "cancelled",
                "retries",
                "throttle_pauses",
                "outcome_unknown",
            ),
            0,
        )
        self._waited: dict[int, list[float]] = {}
        #: Whether to build events for take_outbox (a driver with no hook turns it off:
        #: one event object per SR is a measurable share of the client's own cost).
        self.report_events = True
        # The hot path, per SR: the clock's bound method, and the statuses the refusal
        # rule may call anything but final. With srtm's own rule (``verdict`` not
        # overridden), a response whose status is none of these is final without asking.
        self._monotonic = clock.monotonic
        rule = retry.refusal
        self._retryable_statuses: frozenset[int] | None = (
            rule.always | rule.with_retry_after | rule.ambiguous
            if type(rule).verdict is RefusalRule.verdict
            else None
        )
        # The default classes by variant (the default order is a fixed table; a caller's
        # mapping or function is asked every time, as it may change).
        self._classes: dict[tuple[str, int | None], int] | None = (
            {} if priorities.order is None else None
        )

    # -- state ---------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def has_work_for_another(self) -> bool:
        """Whether another worker could find an SR to send (a hint, to wake one).

        Not when the only SRs queued are bulk ones ready to go and bulk holds all the
        slots it may: the worker woken would find nothing it may send and wait again, once
        per SR. (An SR waiting for a retry still wakes one, to time its wait.)
        """
        queue = self._queue
        if self._in_flight >= self.max_in_flight or len(queue) == 0:
            return False
        return (
            self._bulk_in_flight < self.bulk_slots
            or queue.deferred > 0
            or queue.best(bulk=False) is not None
        )

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def paused_until(self) -> float:
        """Monotonic time until which the User's dispatch is paused (-inf: not paused)."""
        return self._pause_until

    def take_outbox(self) -> tuple[Sequence[Settlement[H]], Sequence[ClientEvent]]:
        """Handles to resolve and events to report, for the driver to do outside its lock.

        Asked twice per SR, and mostly empty: then it gives ``()``, not fresh lists.
        """
        settled, events = self._settled, self._events
        if not settled and not events:
            return (), ()
        self._settled, self._events = [], []
        return settled, events

    def stats(self) -> ClientStats:
        now = self.clock.monotonic()
        return ClientStats(
            queued=self._queue.depth(),
            awaiting_retry=self._queue.deferred,
            in_flight=self._in_flight,
            paused_for=max(0.0, self._pause_until - now),
            pace=self.pacer.rate,
            waited={
                cls: WaitStats(count=int(count), total=total, max=longest)
                for cls, (count, total, longest) in sorted(self._waited.items())
            },
            **self._counts,
        )

    def headers_for(self, sr: ServiceRequest) -> dict[str, str]:
        """Per-SR headers (the User's own identity headers are set on the HTTP client)."""
        headers = {"content-type": sr.content_type, "x-request-id": sr.request_id}
        if sr.headers:
            headers.update(sr.headers)
        return headers

    # -- submitting ----------------------------------------------------------------------

    def submit(self, sr: ServiceRequest, handle: H) -> _Entry[H]:
        """Queue an SR; raises ``ClientClosedError`` once closing."""
        if not isinstance(sr, ServiceRequest):
            raise TypeError(f"submit() takes a ServiceRequest, got {type(sr).__name__}")
        if self._closing:
            raise ClientClosedError()
        priorities = self.priorities
        classes = self._classes
        if classes is None:
            cls = priorities.classify(sr.variant, sr.priority)
        else:
            found = classes.get((sr.variant, sr.priority))
            if found is None:
                if len(classes) > 1024:  # variants are few; a caller inventing them is bounded
                    classes.clear()
                found = classes[sr.variant, sr.priority] = priorities.classify(
                    sr.variant, sr.priority
                )
            cls = found
        now = self._monotonic()
        seq = next(self._seq)
        aging = priorities.aging
        primary = float(cls) if aging is None else cls * aging + now
        deadline = sr.deadline if sr.deadline is not None else self.retry.deadline
        entry = _Entry(
            sr,
            handle,
            cls=cls,
            key=(primary, seq),
            bulk=priorities.is_bulk(cls),
            submitted_at=now,
            deadline_at=None if deadline is None else now + deadline,
        )
        self._queue.push(entry)
        if entry.deadline_at is not None:
            heapq.heappush(self._deadlines, (entry.deadline_at, seq, entry))
        self._counts["submitted"] += 1
        return entry

    def forget(self, entry: _Entry[H]) -> None:
        """The caller cancelled the SR's handle: drop it if it is still waiting."""
        if entry.status is _State.QUEUED and self._queue.remove(entry):
            self._finish(entry, "cancelled", None, report=False)

    # -- dispatching ---------------------------------------------------------------------

    def next_action(self) -> Dispatch[H] | Wait | Finished:
        """What the driver should do now."""
        queue = self._queue
        while True:
            now = self._monotonic()
            if self._deadlines:
                self._expire(now)
            if queue.deferred:
                queue.promote(now)
            if len(queue) == 0:
                if self._closing and self._in_flight == 0:
                    return Finished()
                return Wait(None)  # a submission or a completion wakes the driver
            if self._in_flight >= self.max_in_flight:
                return Wait(self._wake_time())  # or sooner: a completion wakes the driver
            if now < self._pause_until:
                return Wait(_earliest(self._wake_time(), self._pause_until))
            entry = self._choose(now)
            if isinstance(entry, Wait):
                return Wait(_earliest(self._wake_time(), entry.until))
            if not self._claim(entry.handle, entry.attempts == 0):
                # Cancelled by the caller a moment ago.
                queue.remove(entry)
                self._finish(entry, "cancelled", None, report=False)
                continue
            queue.remove(entry)
            self._start(entry, now)
            return Dispatch(entry)

    def _choose(self, now: float) -> _Entry[H] | Wait:
        best = self._queue.best()
        if best is None:
            return Wait(None)
        if best.bulk and not self._bulk_may_go(now):
            urgent = self._queue.best(bulk=False)
            if urgent is None:
                if self._bulk_in_flight >= self.bulk_slots:
                    return Wait(None)
                return Wait(self.pacer.ready_at(now, bulk=True))
            best = urgent
        ready = self.pacer.ready_at(now, bulk=best.bulk)
        if ready > now:
            return Wait(ready)
        return best

    def _bulk_may_go(self, now: float) -> bool:
        return self._bulk_in_flight < self.bulk_slots and self.pacer.ready_at(now, bulk=True) <= now

    def _start(self, entry: _Entry[H], now: float) -> None:
        entry.status = _State.IN_FLIGHT
        entry.attempts += 1
        self._in_flight += 1
        if entry.bulk:
            self._bulk_in_flight += 1
        self.pacer.on_send(now, bulk=entry.bulk)
        self._counts["attempts"] += 1
        if entry.first_sent_at is None:
            entry.first_sent_at = now
            self.budget.earn(now)
            waited = now - entry.submitted_at
            # [count, total, max], made into WaitStats only when stats() asks.
            tally = self._waited.get(entry.cls)
            if tally is None:
                tally = self._waited[entry.cls] = [0, 0.0, 0.0]
            tally[0] += 1
            tally[1] += waited
            if waited > tally[2]:
                tally[2] = waited

    def _wake_time(self) -> float | None:
        while self._deadlines and self._deadlines[0][2].status is not _State.QUEUED:
            heapq.heappop(self._deadlines)
        deadline = self._deadlines[0][0] if self._deadlines else None
        return _earliest(self._queue.next_wake(), deadline)

    def _expire(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, entry = heapq.heappop(self._deadlines)
            if entry.status is _State.QUEUED and self._queue.remove(entry):
                error = DeadlineExceededError(entry.sr, entry.attempts, entry.last_response)
                self._finish(entry, "error", error)

    # -- outcomes ------------------------------------------------------------------------

    def attempt_finished(self, entry: _Entry[H], outcome: httpx.Response | BaseException) -> None:
        """Take in what one attempt produced (a response, or the exception it raised)."""
        now = self._monotonic()
        self._release(entry)
        if isinstance(outcome, httpx.Response):
            entry.last_response = outcome
            if self.pacer.follow_gateway:
                self.pacer.observe(parse_ratelimit(outcome.headers, now=self.clock.time()), now)
            statuses = self._retryable_statuses
            if statuses is not None and outcome.status_code not in statuses:
                # What classify() says of it under srtm's own rule: final, the caller's.
                # (Most SRs end here; any other status takes the general path below.)
                self._finish(entry, "response", outcome)
                return
        elif isinstance(outcome, _AMBIGUOUS) and not isinstance(outcome, _UNSENT):
            unknown = OutcomeUnknownError(entry.sr, entry.attempts, type(outcome).__name__)
            unknown.__cause__ = outcome
            outcome = unknown
        kind = classify(outcome, self.retry.refusal)
        if kind is Kind.AMBIGUOUS:
            entry.maybe_processed = True
        if not (
            kind is Kind.REFUSED
            or kind is Kind.UNREACHED
            or (kind is Kind.AMBIGUOUS and entry.sr.safe_to_repeat)
        ):
            # Not to be retried (what _RetryIfUnprocessed would say): the outcome is the
            # caller's, without driving tenacity for it (most SRs end here).
            if isinstance(outcome, httpx.Response):
                self._finish(entry, "response", outcome)
            else:
                self._finish(entry, "error", outcome)
            return
        state = entry.state
        if state is None:
            state = entry.state = _CallState(self._decider, entry)
            state.attempt_number = entry.attempts
        state.now = now
        if isinstance(outcome, httpx.Response):
            state.set_result(outcome)
        else:
            state.set_exception((type(outcome), outcome, outcome.__traceback__))
        state.kind = kind
        state.decision = None
        state.stop_reason = None
        try:
            action = self._decider.iter(state)
        except BaseException as error:  # the caller's error, or the client giving up
            self._pause_if_refused(state, now)
            self._finish(entry, "error", error)
            return
        self._pause_if_refused(state, now)
        if not isinstance(action, DoSleep):
            self._finish(entry, "response", cast(httpx.Response, action))
            return
        if self._aborted is not None:
            self._finish(entry, "error", self._aborted)
            return
        if self._cancelling or self._cancelled(entry.handle):
            # Cancellation is never retried: the SR was not processed; hand it back.
            self._finish(entry, "cancelled", None)
            return
        state.prepare_for_next_attempt()
        resume = now + float(action)
        if state.kind in (Kind.REFUSED, Kind.UNREACHED):
            resume = max(resume, self._pause_until)
        entry.status = _State.QUEUED
        self._queue.defer(entry, resume)
        if entry.deadline_at is not None:
            heapq.heappush(self._deadlines, (entry.deadline_at, entry.key[1], entry))
        self._counts["retries"] += 1
        cause = _cause(outcome)
        self._events.append(
            RetryScheduled(sr=entry.sr, attempt=entry.attempts, delay=resume - now, cause=cause)
        )
        logger.debug(
            "SR %s (variant %s) attempt %d: %s; retrying in %.3fs",
            entry.sr.request_id,
            entry.sr.variant,
            entry.attempts,
            cause,
            resume - now,
        )

    def attempt_cancelled(self, entry: _Entry[H]) -> None:
        """The attempt was cancelled in flight (the event loop is going away).

        The request may already have reached the gateway: never retried, and never
        reported as unsent; its caller gets an ``OutcomeUnknownError``.
        """
        self._release(entry)
        entry.maybe_processed = True
        self._finish(
            entry, "error", OutcomeUnknownError(entry.sr, entry.attempts, "cancelled in flight")
        )

    def _release(self, entry: _Entry[H]) -> None:
        if entry.status is _State.IN_FLIGHT:
            self._in_flight -= 1
            if entry.bulk:
                self._bulk_in_flight -= 1
            entry.status = _State.QUEUED

    def _pause_if_refused(self, state: _CallState, now: float) -> None:
        if state.kind not in (Kind.REFUSED, Kind.UNREACHED):
            return
        decision = state.decision
        end = now + state.upcoming_sleep
        if end <= self._pause_until:
            return
        if now >= self._pause_until:
            self._counts["throttle_pauses"] += 1
        self._pause_until = end
        response = state.entry.last_response if state.kind is Kind.REFUSED else None
        status = response.status_code if response is not None else None
        self._events.append(
            UserPaused(sr=state.entry.sr, status_code=status, pause=end - now, decision=decision)
        )
        if decision is not None and decision.capped:
            logger.warning(
                "gateway asked for Retry-After %r (%.0fs), above the cap of %.0fs: "
                "pausing for the cap and handing SR %s back",
                decision.raw,
                decision.requested,
                self.wait.cap,
                state.entry.sr.request_id,
            )
        else:
            logger.info(
                "User paused for %.3fs (%s, %s)",
                end - now,
                status if status is not None else "gateway unreachable",
                "Retry-After " + repr(decision.raw)
                if decision is not None and decision.source == "retry-after"
                else "backoff",
            )

    def _stop_reason(self, state: _CallState) -> type[GaveUpError] | None:
        if state.decision is not None and state.decision.capped:
            return RetryAfterTooLongError
        entry = state.entry
        resume = state.now + state.upcoming_sleep
        if entry.deadline_at is not None:
            if state.kind in (Kind.REFUSED, Kind.UNREACHED):
                resume = max(resume, self._pause_until)
            if resume > entry.deadline_at:
                return DeadlineExceededError
        if state.attempt_number >= self.retry.max_attempts:
            return AttemptsExhaustedError
        if not self.budget.try_spend(state.now):
            return RetryBudgetExhaustedError
        return None

    def _give_up(self, retry_state: RetryCallState) -> Any:
        """tenacity's retry_error_callback: what the caller gets when retrying stops."""
        state = cast(_CallState, retry_state)
        outcome = state.outcome
        assert outcome is not None
        reason = state.stop_reason or AttemptsExhaustedError
        sr, attempts = state.entry.sr, state.attempt_number
        if outcome.failed:
            exc = outcome.exception()
            assert exc is not None
            if isinstance(exc, OutcomeUnknownError):
                raise exc  # ambiguous to the end: say so, not "gave up"
            raise reason(sr, attempts, None) from exc
        response = cast(httpx.Response, outcome.result())
        if state.kind is not Kind.REFUSED:
            return response  # an ambiguous answer to a safe-to-repeat SR: the caller's
        if reason is RetryAfterTooLongError:
            decision = state.decision
            assert decision is not None
            assert decision.requested is not None
            raise RetryAfterTooLongError(
                sr, attempts, response, retry_after=decision.requested, cap=self.wait.cap
            )
        raise reason(sr, attempts, response)

    # -- settling ------------------------------------------------------------------------

    def _finish(
        self,
        entry: _Entry[H],
        outcome: Literal["response", "error", "cancelled"],
        value: httpx.Response | BaseException | None,
        *,
        report: bool = True,
    ) -> None:
        if entry.status is _State.DONE:
            return
        entry.status = _State.DONE
        if entry.maybe_processed and (outcome == "cancelled" or isinstance(value, GaveUpError)):
            # Sent once with no clear answer: whatever stops it now, it may have been
            # processed. Not "unsent", not "not processed": its outcome is unknown.
            reason = (
                "cancelled before it was resent"
                if outcome == "cancelled"
                else f"{type(value).__name__} before it was resent"
            )
            unknown = OutcomeUnknownError(entry.sr, entry.attempts, reason)
            unknown.__cause__ = value if isinstance(value, BaseException) else None
            outcome, value = "error", unknown
        if isinstance(value, OutcomeUnknownError):
            self.outcome_unknown.append(entry.sr)
            self._counts["outcome_unknown"] += 1
        if outcome == "response":
            self._counts["responses"] += 1
        elif outcome == "error":
            self._counts["errors"] += 1
        else:
            self._counts["cancelled"] += 1
            if self._cancelling and report:
                self.handed_back.append(entry.sr)
        if report:
            self._settled.append(Settlement(entry.handle, outcome, value))
        response = value if isinstance(value, httpx.Response) else None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "SR %s (variant %s): %s after %d attempt(s)",
                entry.sr.request_id,
                entry.sr.variant,
                outcome if response is None else response.status_code,
                entry.attempts,
            )
        if not self.report_events:
            return
        now = self._monotonic()
        error = value if isinstance(value, BaseException) else None
        self._events.append(
            SRSettled(
                sr=entry.sr,
                priority=entry.cls,
                outcome=outcome,
                status_code=response.status_code if response is not None else None,
                error=error,
                attempts=entry.attempts,
                queued_for=None
                if entry.first_sent_at is None
                else entry.first_sent_at - entry.submitted_at,
                latency=now - entry.submitted_at,
            )
        )

    # -- closing -------------------------------------------------------------------------

    def close(self, *, cancel: bool) -> None:
        """Accept no more SRs; with ``cancel``, cancel every SR not in flight."""
        self._closing = True
        if cancel:
            self.cancel_pending()

    def abort(self, error: BaseException) -> None:
        """The driver broke: fail every SR not in flight with ``error``, and any retry."""
        self._closing = True
        self._aborted = error
        for entry in self._queue.drain():
            self._finish(entry, "error", error)

    def cancel_pending(self) -> None:
        """Cancel every queued SR (and any that would be retried) and hand them back."""
        self._closing = True
        self._cancelling = True
        for entry in self._queue.drain():
            self._finish(entry, "cancelled", None)


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


def _cause(outcome: httpx.Response | BaseException) -> str:
    if isinstance(outcome, httpx.Response):
        refused = outcome.headers.get(REFUSED_HEADER)
        return f"{outcome.status_code}" + (f" ({refused})" if refused else "")
    return type(outcome).__name__
