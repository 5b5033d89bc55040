"""``ServiceRequestClient`` (threads) and ``AsyncServiceRequestClient`` (asyncio).

Both share ``BaseClient``: configuration, the I/O-free ``ClientCore`` and reporting.
Each repeats only the I/O: a dispatcher (a thread, or a task) asks the core what to do
and waits when told to; each send runs on a worker (a thread from a pool of
``max_in_flight``, or a task) over one httpx client, and reports its outcome back to
the core.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import logging
import math
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import httpx

from srtm.client._base import ClientCore, Dispatch, Finished, Settlement, _Entry
from srtm.client._clock import Clock, SystemClock
from srtm.client._priorities import Classifier, PriorityPolicy
from srtm.client._retry import RetryPolicy
from srtm.client._transport import (
    TRANSPORTS,
    AiohttpAsyncWire,
    AiohttpSyncWire,
    AsyncWire,
    HttpxAsyncWire,
    HttpxSyncWire,
    SyncWire,
    TransportName,
)

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncGenerator, Sequence
    from types import TracebackType

    from srtm.client._events import ClientEvent, ClientStats
    from srtm.client._request import ServiceRequest

__all__ = ["AsyncServiceRequestClient", "BaseClient", "ServiceRequestClient"]

logger = logging.getLogger("srtm.client")

H = TypeVar("H")

#: Set while a thread resolves handles or runs hooks: close() from there would deadlock.
_delivering = threading.local()

#: How long an unclosed client drains its queue at exit (or when its event loop shuts
#: down) before cancelling the rest, by default: long enough for a normal queue.
DEFAULT_EXIT_TIMEOUT = 60.0
#: At exit, after the drain: how long SRs already in flight may take to be answered.
_IN_FLIGHT_AT_EXIT = 30.0


class _OpenClients:
    """The sync clients still open, drained by one ``atexit`` hook (weakly held)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: weakref.WeakSet[ServiceRequestClient] = weakref.WeakSet()
        # atexit hooks run after the main thread ends and non-daemon threads are joined,
        # and before daemon threads (the client's workers) stop: they can still send.
        atexit.register(self.drain)

    def add(self, client: ServiceRequestClient) -> None:
        with self._lock:
            self._clients.add(client)

    def discard(self, client: ServiceRequestClient) -> None:
        with self._lock:
            self._clients.discard(client)

    def drain(self) -> None:
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            try:
                client._exit()
            except Exception:  # one client's failure must not strand the others' SRs
                logger.exception("srtm.client: draining a client at exit failed")


_at_exit = _OpenClients()


def _join(threads: list[threading.Thread], timeout: float | None) -> bool:
    """Join every thread within ``timeout`` seconds in all; True if they all ended."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


def _report_unknown(unknown: list[ServiceRequest]) -> None:
    """close() says how many SRs ended sent but unanswered, and which."""
    if unknown:
        logger.warning(
            "srtm.client: %d SR(s) were sent and never clearly answered (outcome unknown: "
            "not handed back as unsent; find out before resending): %s",
            len(unknown),
            ", ".join(sr.request_id for sr in unknown[:20])
            + (", ..." if len(unknown) > 20 else ""),
        )


def _check_exit_timeout(value: float | None) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(f"exit_timeout: must be zero or more seconds, or None, got {value!r}")
    return float(value)


CertTypes = str | tuple[str, str] | tuple[str, str, str]
Outcome = httpx.Response | BaseException
PrioritiesTypes = PriorityPolicy | Mapping[str, int] | Classifier | None


def _ssl_context(verify: ssl.SSLContext | str | bool, cert: CertTypes | None) -> ssl.SSLContext:
    """The TLS context: server verification, and the User's client certificate if any."""
    if isinstance(verify, ssl.SSLContext):
        ctx = verify
    elif isinstance(verify, str):
        ctx = (
            ssl.create_default_context(capath=verify)
            if os.path.isdir(verify)
            else ssl.create_default_context(cafile=verify)
        )
    else:
        ctx = httpx.create_ssl_context(verify=verify)
    if cert is not None:
        if isinstance(cert, str):
            ctx.load_cert_chain(cert)
        elif len(cert) == 2:
            ctx.load_cert_chain(cert[0], cert[1])
        else:
            ctx.load_cert_chain(cert[0], cert[1], cert[2])
    return ctx


def _library(transport: object) -> TransportName | None:
    """The library a ``transport`` argument names (None: a test's httpx transport)."""
    if transport is None:
        return "httpx"
    if isinstance(transport, str):
        if transport not in TRANSPORTS:
            raise ValueError(
                f"transport: must be one of {', '.join(map(repr, TRANSPORTS))} "
                f"(or an httpx transport), got {transport!r}"
            )
        return "aiohttp" if transport == "aiohttp" else "httpx"
    return None


class BaseClient(Generic[H]):
    """What the sync and async clients share: configuration, the core, reporting."""

    def __init__(
        self,
        *,
        base_url: str | httpx.URL,
        user_id: str,
        duis_version: str,
        priorities: PrioritiesTypes,
        max_in_flight: int,
        rate: float | None,
        follow_rate_limit: bool,
        pace_factor: float,
        retry: RetryPolicy,
        headers: Mapping[str, str] | None,
        on_event: Callable[[ClientEvent], None] | None,
        exit_timeout: float | None,
        clock: Clock | None,
        rng: random.Random | Callable[[], float] | None,
    ) -> None:
        self.exit_timeout: float | None = _check_exit_timeout(exit_timeout)
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError(f"user_id: must be a non-empty string, got {user_id!r}")
        if not isinstance(duis_version, str) or not duis_version.strip():
            raise ValueError(f"duis_version: must be a non-empty string, got {duis_version!r}")
        if not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry: must be a RetryPolicy, got {type(retry).__name__}")
        self.base_url: httpx.URL = httpx.URL(base_url)
        self.user_id = user_id
        self.duis_version = duis_version
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.identity_headers: dict[str, str] = {
            **(headers or {}),
            "X-Service-User-ID": user_id,
            "X-DUIS-Version": duis_version,
        }
        self._core: ClientCore[H] = ClientCore(
            priorities=PriorityPolicy.coerce(priorities),
            retry=retry,
            max_in_flight=max_in_flight,
            rate=rate,
            follow_rate_limit=follow_rate_limit,
            pace_factor=pace_factor,
            clock=self.clock,
            rng=rng,
            claim=self._claim,
            cancelled=self._is_cancelled,
        )
        self.on_event = on_event

    @property
    def on_event(self) -> Callable[[ClientEvent], None] | None:
        """The hook that sees every event (None: events are not even built)."""
        return self._on_event

    @on_event.setter
    def on_event(self, hook: Callable[[ClientEvent], None] | None) -> None:
        self._on_event = hook
        self._core.report_events = hook is not None

    def _wire_options(
        self,
        verify: ssl.SSLContext | str | bool,
        cert: CertTypes | None,
        timeout: httpx.Timeout | float | None,
        *,
        mock: bool = False,
    ) -> dict[str, Any]:
        """What every transport is built from (a test's mock transport needs no TLS)."""
        return {
            "base_url": self.base_url,
            "headers": self.identity_headers,
            "ssl_context": None if mock else partial(_ssl_context, verify, cert),
            "timeout": timeout,
            "max_in_flight": self._core.max_in_flight,
        }

    # Handle operations, which differ between concurrent.futures and asyncio.
    def _claim(self, handle: H, first: bool) -> bool:
        raise NotImplementedError

    def _is_cancelled(self, handle: H) -> bool:
        raise NotImplementedError

    def _resolve(self, settlement: Settlement[H]) -> None:
        raise NotImplementedError

    @property
    def max_in_flight(self) -> int:
        return self._core.max_in_flight

    def _deliver(self, settled: Sequence[Settlement[H]], events: Sequence[ClientEvent]) -> None:
        """Resolve handles and report events (outside any lock)."""
        _delivering.active = True
        try:
            for settlement in settled:
                self._resolve(settlement)
            hook = self._on_event
            if hook is None:
                return
            for event in events:
                try:
                    hook(event)
                except Exception:
                    logger.exception("srtm.client on_event hook failed on %r", event)
        finally:
            _delivering.active = False

    def _request_headers(self, entry: _Entry[H]) -> dict[str, str]:
        return self._core.headers_for(entry.sr)


class ServiceRequestClient(BaseClient["concurrent.futures.Future[httpx.Response]"]):
    """Send SRs to the gateway from threads: urgent first, throttling honoured.

    ``submit(sr)`` queues an SR and returns a ``concurrent.futures.Future`` that ends in
    the gateway's final response (an ``httpx.Response``), an exception, or a
    cancellation; ``send(sr)`` submits and waits. Close it (or use ``with``): closing
    drains the queue by default, or with ``cancel=True`` cancels what was not sent and
    returns those SRs. A client still open when the interpreter exits drains its queue
    then, for at most ``exit_timeout`` seconds; what is left after that is cancelled and
    counted in a WARNING, never dropped silently.

    Configuration is keyword-only: ``base_url``, the User's ``user_id`` and
    ``duis_version`` (sent as ``X-Service-User-ID`` and ``X-DUIS-Version``), TLS
    (``verify``, ``cert``), ``timeout``, ``priorities`` (a ``PriorityPolicy``, or a
    mapping or function for its order), ``max_in_flight``, pacing (``rate``: the User's
    allocation in SR/s if known; ``follow_rate_limit``: read the gateway's RateLimit
    fields; ``pace_factor``: the share of that rate to use), ``retry`` (a
    ``RetryPolicy``, which holds the ``RefusalRule``), ``on_event`` (a hook),
    ``exit_timeout``, ``transport`` (``"httpx"``, the default; ``"aiohttp"``, with the
    ``aiohttp`` extra, about three times the SR rate; or an httpx transport object, for
    tests), and for tests ``clock`` and ``rng``.
    """

    def __init__(
        self,
        *,
        base_url: str | httpx.URL,
        user_id: str,
        duis_version: str = "4.1",
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        timeout: httpx.Timeout | float | None = 30.0,
        priorities: PrioritiesTypes = None,
        max_in_flight: int = 8,
        rate: float | None = None,
        follow_rate_limit: bool = True,
        pace_factor: float = 0.9,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        on_event: Callable[[ClientEvent], None] | None = None,
        exit_timeout: float | None = DEFAULT_EXIT_TIMEOUT,
        clock: Clock | None = None,
        rng: random.Random | Callable[[], float] | None = None,
        transport: httpx.BaseTransport | TransportName | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            user_id=user_id,
            duis_version=duis_version,
            priorities=priorities,
            max_in_flight=max_in_flight,
            rate=rate,
            follow_rate_limit=follow_rate_limit,
            pace_factor=pace_factor,
            retry=retry if retry is not None else RetryPolicy(),
            headers=headers,
            on_event=on_event,
            exit_timeout=exit_timeout,
            clock=clock,
            rng=rng,
        )
        self._wire: SyncWire
        if _library(transport) == "aiohttp":
            self._wire = AiohttpSyncWire(**self._wire_options(verify, cert, timeout))
        else:
            mock = None if isinstance(transport, str) else transport
            self._wire = HttpxSyncWire(
                **self._wire_options(verify, cert, timeout, mock=mock is not None), transport=mock
            )
        self._cond = threading.Condition(threading.RLock())
        self._busy = 0  # sends taken by a worker and not yet fully reported
        self._background = self._wire if isinstance(self._wire, AiohttpSyncWire) else None
        #: Outcomes of background sends, for a worker to report to the core.
        self._completed: list[tuple[_Entry[concurrent.futures.Future[httpx.Response]], Outcome]]
        self._completed = []
        self._workers: list[threading.Thread] = []
        self._closed = False
        _at_exit.add(self)

    # -- the public API -----------------------------------------------------------------

    def submit(self, sr: ServiceRequest) -> concurrent.futures.Future[httpx.Response]:
        """Queue an SR; the future ends in its final response, an error, or cancellation."""
        future: concurrent.futures.Future[httpx.Response] = concurrent.futures.Future()
        with self._cond:
            entry = self._core.submit(sr, future)
            if not self._workers:
                self._start_workers()
            self._cond.notify()
        future.add_done_callback(partial(self._on_done, entry))
        return future

    def send(self, sr: ServiceRequest, *, timeout: float | None = None) -> httpx.Response:
        """Submit an SR and wait for its final response (or its error).

        After ``timeout`` seconds, raises ``TimeoutError`` and cancels the SR if it has
        not been sent yet; one already sent still completes, unseen. For a limit the
        client itself enforces (and reports), give the SR a ``deadline``.
        """
        future = self.submit(sr)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def stats(self) -> ClientStats:
        """A snapshot of queue depths, waits, pauses and retries."""
        with self._cond:
            return self._core.stats()

    @property
    def outcome_unknown(self) -> list[ServiceRequest]:
        """SRs that were sent and never clearly answered (ended in ``OutcomeUnknownError``).

        The gateway may have processed them: they are never among the SRs ``close()``
        hands back as unsent. Find out (from the DSP's responses) before resending one.
        """
        with self._cond:
            return list(self._core.outcome_unknown)

    def close(
        self, *, cancel: bool = False, drain_timeout: float | None = None
    ) -> list[ServiceRequest]:
        """Stop accepting SRs and finish: drain the queue, or cancel what was not sent.

        Drains by default: every queued SR is sent (throttling still honoured) and every
        handle resolved. With ``cancel=True``, or once ``drain_timeout`` seconds of draining
        have passed, SRs not yet sent (or waiting to be resent) are cancelled; SRs in
        flight still complete. Returns the cancelled SRs, in queue order: never one that
        was sent without a clear answer (those end in ``OutcomeUnknownError``, are listed
        by ``outcome_unknown`` and counted in a WARNING here).
        """
        if getattr(_delivering, "active", False):
            raise RuntimeError("close() from an on_event hook would wait for itself")
        self._shutdown(cancel=cancel, drain_timeout=drain_timeout)
        return list(self._core.handed_back)

    def _shutdown(
        self, *, cancel: bool, drain_timeout: float | None, at_exit: bool = False
    ) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._core.close(cancel=cancel)
            self._cond.notify_all()
            workers = list(self._workers)
        if not _join(workers, drain_timeout):
            with self._cond:
                before = len(self._core.handed_back)
                self._core.cancel_pending()
                cancelled = len(self._core.handed_back) - before
                self._cond.notify_all()
            if at_exit and cancelled:
                logger.warning(
                    "srtm.client: the interpreter is exiting and the exit timeout (%.0fs) "
                    "has passed: %d SR(s) not sent were cancelled (futures cancelled)",
                    drain_timeout,
                    cancelled,
                )
            if not _join(workers, _IN_FLIGHT_AT_EXIT if at_exit else None):
                with self._cond:
                    left = self._core.in_flight
                logger.warning(
                    "srtm.client: exiting with %d SR(s) still in flight: their outcome is unknown",
                    left,
                )
                return
        self._wire.close()
        _at_exit.discard(self)
        _report_unknown(self.outcome_unknown)

    def _exit(self) -> None:
        """At interpreter exit: drain what an unclosed client still holds."""
        with self._cond:
            if self._closed:
                return
            pending = sum(self._core.stats().queued.values()) + self._core.in_flight
        if pending:
            logger.info(
                "srtm.client: the interpreter is exiting with the client open: draining "
                "%d SR(s) (at most %ss; close() the client to choose)",
                pending,
                self.exit_timeout,
            )
        self._shutdown(cancel=False, drain_timeout=self.exit_timeout, at_exit=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Leaving on an error cancels what was not sent (the handles say so) rather than
        # draining a long queue while the error waits.
        self.close(cancel=exc_type is not None)

    # -- handles ------------------------------------------------------------------------

    def _claim(self, handle: concurrent.futures.Future[httpx.Response], first: bool) -> bool:
        if first:
            return handle.set_running_or_notify_cancel()
        return not handle.done()

    def _is_cancelled(self, handle: concurrent.futures.Future[httpx.Response]) -> bool:
        return handle.cancelled()

    def _resolve(self, settlement: Settlement[concurrent.futures.Future[httpx.Response]]) -> None:
        future = settlement.handle
        if future.done():
            return
        try:
            if settlement.outcome == "response":
                assert isinstance(settlement.value, httpx.Response)
                future.set_result(settlement.value)
            elif settlement.outcome == "error":
                assert isinstance(settlement.value, BaseException)
                future.set_exception(settlement.value)
            elif not future.cancel():
                # Sent before, so marked running: report the cancellation as its error.
                future.set_exception(
                    concurrent.futures.CancelledError("cancelled by close() before it was resent")
                )
        except concurrent.futures.InvalidStateError:
            pass  # the caller cancelled it a moment ago

    def _on_done(
        self,
        entry: _Entry[concurrent.futures.Future[httpx.Response]],
        future: concurrent.futures.Future[httpx.Response],
    ) -> None:
        if future.cancelled():
            with self._cond:
                self._core.forget(entry)
                settled, events = self._core.take_outbox()
                self._cond.notify_all()
            self._deliver(settled, events)

    # -- the workers --------------------------------------------------------------------

    def _start_workers(self) -> None:
        """Start ``max_in_flight`` workers; each asks the core for work and sends it.

        Daemon threads, so an unclosed client never keeps the interpreter alive; the exit
        hook drains it instead (concurrent.futures' pool refuses work once exit begins).
        """
        for i in range(self._core.max_in_flight):
            worker = threading.Thread(target=self._run, name=f"srtm-client-send-{i}", daemon=True)
            self._workers.append(worker)
            worker.start()

    def _run(self) -> None:
        try:
            self._work()
        except Exception as exc:  # a bug must not strand the callers' handles
            logger.exception("srtm.client dispatcher failed; failing every pending SR")
            with self._cond:
                self._core.abort(exc)
                settled, events = self._core.take_outbox()
                self._cond.notify_all()
            self._deliver(settled, events)

    def _work(self) -> None:
        core, cond = self._core, self._cond
        virtual = self.clock.virtual
        # A wire that sends in the background (aiohttp's, on its event loop) does not hold
        # a worker per request: the worker starts the send and takes the next action at
        # once, and the outcome comes back through ``_completed``. With httpx the worker
        # sends, blocking, and then reports.
        background = self._background
        # On the real clock, a worker reports an attempt's outcome and takes its next
        # action under one hold of the lock (one acquisition per SR, not three).
        report: tuple[_Entry[concurrent.futures.Future[httpx.Response]], Outcome] | None = None
        while True:
            reported = 0
            with cond:
                if report is not None:
                    core.attempt_finished(*report)
                    report = None
                while True:
                    if self._completed:
                        done, self._completed = self._completed, []
                        for entry, outcome in done:
                            core.attempt_finished(entry, outcome)
                        reported += len(done)
                    action = core.next_action()
                    settled, events = core.take_outbox()
                    if isinstance(action, Dispatch):
                        if virtual:
                            self._busy += 1
                        if background is not None:
                            entry = action.entry
                            background.start(
                                entry.sr.path,
                                entry.sr.body,
                                self._request_headers(entry),
                                partial(self._complete, entry),
                            )
                            if settled or events or reported:
                                break
                            continue  # the next SR, under the same hold of the lock
                        if core.has_work_for_another():
                            cond.notify()  # another worker may take the next SR
                        break
                    if isinstance(action, Finished):
                        cond.notify_all()
                        break
                    if settled or events or reported:
                        break
                    self._wait(action.until)
            if settled or events:
                self._deliver(settled, events)
            if reported and virtual:
                with cond:  # time may move again once their hooks have run
                    self._busy -= reported
                    cond.notify_all()
            if isinstance(action, Dispatch) and background is None:
                if virtual:
                    self._attempt(action.entry)
                else:
                    report = (action.entry, self._send(action.entry))
            elif isinstance(action, Finished):
                return

    def _complete(
        self, entry: _Entry[concurrent.futures.Future[httpx.Response]], outcome: Outcome
    ) -> None:
        """A background send ended (on the wire's thread): a worker takes it from here."""
        with self._cond:
            self._completed.append((entry, outcome))
            self._cond.notify()

    def _wait(self, until: float | None) -> None:
        """Wait (holding the condition) until ``until`` or a notification."""
        if self.clock.virtual:
            # Virtual time moves only when nothing is running: no send in flight and no
            # worker still reporting (its hooks may submit SRs "at" the current time).
            if until is not None and self._busy == 0:
                self.clock.advance_to(until)
            else:
                self._cond.wait()
            return
        timeout = None if until is None else max(0.0, until - self.clock.monotonic())
        self._cond.wait(timeout)

    def _send(self, entry: _Entry[concurrent.futures.Future[httpx.Response]]) -> Outcome:
        try:
            return self._wire.post(entry.sr.path, entry.sr.body, self._request_headers(entry))
        except Exception as exc:
            return exc

    def _attempt(self, entry: _Entry[concurrent.futures.Future[httpx.Response]]) -> None:
        """On a virtual clock: send and report, then let time move (``_busy``)."""
        outcome = self._send(entry)
        try:
            with self._cond:
                self._core.attempt_finished(entry, outcome)
                settled, events = self._core.take_outbox()
            self._deliver(settled, events)
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()


class AsyncServiceRequestClient(BaseClient["asyncio.Future[httpx.Response]"]):
    """Send SRs to the gateway from asyncio: urgent first, throttling honoured.

    The asyncio twin of ``ServiceRequestClient``, with the same configuration.
    ``submit(sr)`` (a plain method, called on the event loop) returns an
    ``asyncio.Future``; ``await send(sr)`` submits and waits; ``await aclose()`` (or
    ``async with``) drains or cancels. Cancelling the future of a queued SR removes it;
    an SR already sent finishes, but it is never retried once cancelled. A client still
    open when its event loop shuts down (``asyncio.run`` returning) drains its queue
    first, for at most ``exit_timeout`` seconds, then cancels the rest with a WARNING.
    """

    def __init__(
        self,
        *,
        base_url: str | httpx.URL,
        user_id: str,
        duis_version: str = "4.1",
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        timeout: httpx.Timeout | float | None = 30.0,
        priorities: PrioritiesTypes = None,
        max_in_flight: int = 8,
        rate: float | None = None,
        follow_rate_limit: bool = True,
        pace_factor: float = 0.9,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        on_event: Callable[[ClientEvent], None] | None = None,
        exit_timeout: float | None = DEFAULT_EXIT_TIMEOUT,
        clock: Clock | None = None,
        rng: random.Random | Callable[[], float] | None = None,
        transport: httpx.AsyncBaseTransport | TransportName | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            user_id=user_id,
            duis_version=duis_version,
            priorities=priorities,
            max_in_flight=max_in_flight,
            rate=rate,
            follow_rate_limit=follow_rate_limit,
            pace_factor=pace_factor,
            retry=retry if retry is not None else RetryPolicy(),
            headers=headers,
            on_event=on_event,
            exit_timeout=exit_timeout,
            clock=clock,
            rng=rng,
        )
        self._wire: AsyncWire
        if _library(transport) == "aiohttp":
            self._wire = AiohttpAsyncWire(**self._wire_options(verify, cert, timeout))
        else:
            mock = None if isinstance(transport, str) else transport
            self._wire = HttpxAsyncWire(
                **self._wire_options(verify, cert, timeout, mock=mock is not None), transport=mock
            )
        self._workers: list[asyncio.Task[None]] = []
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._exit_hook: AsyncGenerator[None, None] | None = None
        self._closed = False
        self._entries: dict[
            asyncio.Future[httpx.Response], _Entry[asyncio.Future[httpx.Response]]
        ] = {}

    # -- the public API -----------------------------------------------------------------

    def submit(self, sr: ServiceRequest) -> asyncio.Future[httpx.Response]:
        """Queue an SR; await the future for its final response (or its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[httpx.Response] = loop.create_future()
        entry = self._core.submit(sr, future)
        if not self._workers:
            self._start_workers(loop)
            self._hook_loop_shutdown()
        # One bound method for every future, the entry found by the future: ``_resolve`` can
        # then remove it before settling, sparing the loop one callback per SR (it is only
        # there to notice a caller's cancellation).
        self._entries[future] = entry
        future.add_done_callback(self._on_done)
        if self._idle:
            self._notify()
        return future

    async def send(self, sr: ServiceRequest) -> httpx.Response:
        """Submit an SR and wait for its final response (or its error)."""
        return await self.submit(sr)

    def stats(self) -> ClientStats:
        """A snapshot of queue depths, waits, pauses and retries."""
        return self._core.stats()

    @property
    def outcome_unknown(self) -> list[ServiceRequest]:
        """SRs sent and never clearly answered; as ``ServiceRequestClient.outcome_unknown``."""
        return list(self._core.outcome_unknown)

    async def aclose(
        self, *, cancel: bool = False, drain_timeout: float | None = None
    ) -> list[ServiceRequest]:
        """Stop accepting SRs and finish: drain the queue, or cancel what was not sent.

        As ``ServiceRequestClient.close``: drains by default; ``cancel=True`` (or a
        ``drain_timeout`` running out) cancels SRs not yet sent and returns them; SRs
        sent without a clear answer are never among them (see ``outcome_unknown``).
        """
        if self._closed:
            return list(self._core.handed_back)
        self._closed = True
        self._core.close(cancel=cancel)
        self._notify(everyone=True)
        if not await self._join(drain_timeout):
            self._core.cancel_pending()
            self._deliver(*self._core.take_outbox())
            self._notify(everyone=True)
            await self._join(None)
        await self._wire.aclose()
        if self._exit_hook is not None:
            await self._exit_hook.aclose()
        _report_unknown(self._core.outcome_unknown)
        return list(self._core.handed_back)

    async def _join(self, within: float | None) -> bool:
        """Wait for the workers to finish, at most ``within`` s; True if they did."""
        workers = [w for w in self._workers if not w.done()]
        if not workers:
            return True
        _, pending = await asyncio.wait(workers, timeout=within)
        return not pending

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose(cancel=exc_type is not None)

    # -- handles ------------------------------------------------------------------------

    def _claim(self, handle: asyncio.Future[httpx.Response], first: bool) -> bool:
        return not handle.done()

    def _is_cancelled(self, handle: asyncio.Future[httpx.Response]) -> bool:
        return handle.cancelled()

    def _resolve(self, settlement: Settlement[asyncio.Future[httpx.Response]]) -> None:
        future = settlement.handle
        if future.done():
            return
        if settlement.outcome == "response":
            assert isinstance(settlement.value, httpx.Response)
            self._unwatch(future)
            future.set_result(settlement.value)
        elif settlement.outcome == "error":
            assert isinstance(settlement.value, BaseException)
            self._unwatch(future)
            future.set_exception(settlement.value)
        else:
            future.cancel()

    def _unwatch(self, future: asyncio.Future[httpx.Response]) -> None:
        """Drop the cancellation watch of a future about to be settled with a result."""
        if self._entries.pop(future, None) is not None:
            future.remove_done_callback(self._on_done)

    def _on_done(self, future: asyncio.Future[httpx.Response]) -> None:
        entry = self._entries.pop(future, None)
        if entry is not None and future.cancelled():
            self._core.forget(entry)
            self._deliver(*self._core.take_outbox())
            self._notify()

    def _notify(self, *, everyone: bool = False) -> None:
        """Wake one idle worker (or all of them)."""
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not everyone:
                    return

    # -- the workers --------------------------------------------------------------------

    def _start_workers(self, loop: asyncio.AbstractEventLoop) -> None:
        """``max_in_flight`` worker tasks; each asks the core for work and sends it."""
        self._workers = [
            loop.create_task(self._run(), name=f"srtm-client-send-{i}")
            for i in range(self._core.max_in_flight)
        ]

    def _hook_loop_shutdown(self) -> None:
        """Be told when the event loop shuts down, after its tasks are cancelled.

        ``asyncio.run`` cancels every task (these workers too, even before they start),
        then finalises the asynchronous generators still open: this one's ``finally``
        then drains the queue with fresh workers, for at most ``exit_timeout``.
        """
        hook = self._at_loop_shutdown()
        try:
            hook.asend(None).send(None)  # run it to its yield: the loop now tracks it
        except StopIteration:
            self._exit_hook = hook

    async def _at_loop_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if not self._closed:
                await self._drain_at_shutdown()

    async def _drain_at_shutdown(self) -> None:
        self._closed = True
        self._core.close(cancel=False)
        pending = sum(self._core.stats().queued.values())
        if pending:
            logger.info(
                "srtm.client: the event loop is shutting down with the client open: "
                "draining %d SR(s) (at most %ss; aclose() the client to choose)",
                pending,
                self.exit_timeout,
            )
            self._start_workers(asyncio.get_running_loop())
        if not await self._join(self.exit_timeout):
            before = len(self._core.handed_back)
            self._core.cancel_pending()
            self._deliver(*self._core.take_outbox())
            self._notify(everyone=True)
            logger.warning(
                "srtm.client: the event loop is shutting down and the exit timeout (%.0fs) "
                "has passed: %d SR(s) not sent were cancelled (futures cancelled)",
                self.exit_timeout,
                len(self._core.handed_back) - before,
            )
            if not await self._join(_IN_FLIGHT_AT_EXIT):
                for worker in self._workers:
                    worker.cancel()  # what is still in flight ends as outcome unknown
                await self._join(None)
        await self._wire.aclose()
        _report_unknown(self._core.outcome_unknown)

    async def _run(self) -> None:
        try:
            await self._work()
        except Exception as exc:  # a bug must not strand the callers' handles
            logger.exception("srtm.client dispatcher failed; failing every pending SR")
            self._core.abort(exc)
            self._deliver(*self._core.take_outbox())
            self._notify(everyone=True)

    async def _work(self) -> None:
        core = self._core
        while True:
            action = core.next_action()
            settled, events = core.take_outbox()
            if settled or events:
                self._deliver(settled, events)
            if isinstance(action, Dispatch):
                if self._idle and core.has_work_for_another():
                    self._notify()
                await self._attempt(action.entry)
            elif isinstance(action, Finished):
                self._notify(everyone=True)
                return
            elif not settled and not events:
                await self._wait(action.until)

    async def _wait(self, until: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._idle.append(waiter)
        if self.clock.virtual:
            if until is not None and self._core.in_flight == 0:
                self.clock.advance_to(until)
                waiter.cancel()
                await asyncio.sleep(0)
            else:
                await waiter
            return
        timer = None
        if until is not None:
            timer = loop.call_later(max(0.0, until - self.clock.monotonic()), _wake, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()

    async def _attempt(self, entry: _Entry[asyncio.Future[httpx.Response]]) -> None:
        outcome: httpx.Response | BaseException
        try:
            outcome = await self._wire.post(
                entry.sr.path, entry.sr.body, self._request_headers(entry)
            )
        except asyncio.CancelledError:
            self._core.attempt_cancelled(entry)
            self._deliver(*self._core.take_outbox())
            raise
        except Exception as exc:
            outcome = exc
        self._core.attempt_finished(entry, outcome)
        settled, events = self._core.take_outbox()
        if settled or events:
            self._deliver(settled, events)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
