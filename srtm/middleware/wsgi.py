"""WSGI middleware: traffic management in front of any WSGI gateway app.

``WSGITrafficManager(app, policy)`` wraps a Flask or Django (or any WSGI) app. Per
request it identifies the Service User from headers a trusted front end set (or the
client certificate, where the server exposes it), asks the gate, and either calls the
app, adding the ``RateLimit`` fields to its response, or answers 401/429/503 itself.
Before a refusal it reads and discards a small body (at most ``DRAIN_LIMIT``) so a
keep-alive connection stays usable; it never passes on, buffers or parses a body.

The app finds ``environ["srtm.gate"]`` on every request and ``environ["srtm.decision"]``
and ``environ["srtm.user"]`` on admitted ones: the same keys as the ASGI middleware. A
gate may be built first and handed in (``gate=Gate(policy)``).

As in the ASGI middleware, the default set-up (built-in header identity, one pool)
takes a **fast path**: the identity entries are read straight from the environ, no
:class:`~srtm.identity.RequestView` is built, and the Identity (or 401/403 answer)
comes from a bounded cache per raw value pair filled by the general path itself; any
other ``identify`` or a ``pool_of`` takes the **general path**. RateLimit fields and
refusals are prebuilt per value on both (``_common.Front``).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from srtm.gate import Gate
from srtm.identity import FrontEndTrust, Identity, RequestView
from srtm.middleware._common import DRAIN_LIMIT, Answer, Front, Lean, content_length

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable
    from types import TracebackType

    from srtm.identity import Identify, PoolOf, Subject
    from srtm.middleware._common import ExemptPaths, MetricsSink, OnRefusal
    from srtm.policy import TrafficPolicy

    ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
    StartResponse = Callable[..., Callable[[bytes], Any]]
    WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

__all__ = ["WSGITrafficManager"]

log: logging.Logger = logging.getLogger("srtm.middleware")


class WSGITrafficManager:
    """Share a back end's capacity fairly across Service Users (WSGI).

    Give either ``policy`` (one :class:`~srtm.TrafficPolicy` or a mapping of pools) or a
    ready ``gate``; ``clock`` and ``background`` only apply when the gate is built here.
    ``trusted_peers`` and ``front_end_secret`` say which connections may vouch for the
    identity headers (see :class:`srtm.identity.FrontEndTrust` and docs/trust.md).
    ``metrics`` (a :class:`srtm.metrics.GatewayMetrics` for this gate) is told of every
    decision; ``metrics_path`` serves its exposition at that path, exempt from
    identification (metrics are built for the gate when only the path is given).
    ``on_refusal(request, decision)`` is called for every refusal, shadow ones included.
    """

    def __init__(
        self,
        app: WSGIApp,
        policy: TrafficPolicy | Mapping[str, TrafficPolicy] | None = None,
        *,
        gate: Gate | None = None,
        identify: Identify | None = None,
        pool_of: PoolOf | None = None,
        exempt_paths: ExemptPaths = (),
        trusted_peers: Collection[str] = (),
        front_end_secret: str | None = None,
        front_end_secret_header: str = "X-SRTM-Front-End-Secret",
        metrics: MetricsSink | None = None,
        metrics_path: str | None = None,
        on_refusal: OnRefusal | None = None,
        clock: Callable[[], float] | None = None,
        background: bool | None = None,
    ) -> None:
        self.app = app
        if gate is None:
            if policy is None:
                raise TypeError("WSGITrafficManager needs a policy or a gate")
            gate = Gate(
                policy,
                clock=clock or time.time,
                background=True if background is None else background,
            )
        elif policy is not None or clock is not None or background is not None:
            raise TypeError("give either a gate, or a policy (with clock, background): not both")
        elif not isinstance(gate, Gate):
            raise TypeError(
                f"the WSGI middleware needs an srtm.Gate, got {type(gate).__name__}"
                " (AsyncGate is the ASGI middleware's)"
            )
        self.gate = gate
        trust = FrontEndTrust(trusted_peers, front_end_secret, front_end_secret_header)
        self._front = Front(
            gate,
            identify=identify,
            pool_of=pool_of,
            exempt_paths=exempt_paths,
            trust=trust,
            metrics=metrics,
            metrics_path=metrics_path,
            on_refusal=on_refusal,
        )
        #: The :class:`srtm.metrics.GatewayMetrics` this middleware reports to, if any.
        self.metrics: MetricsSink | None = self._front.metrics
        # The fast path (module docstring), or None: every request takes the general one.
        self._lean: Lean | None = Lean.of(self._front, decode=False)
        lean = self._lean
        self._keys = (
            (
                _environ_key(lean.user_name),
                _environ_key(lean.version_name),
                _environ_key(lean.secret_name),
            )
            if lean is not None
            else ("", "", "")
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ["srtm.gate"] = self.gate
        front = self._front
        if front.watch_workers:
            front.check_workers(environ.get("wsgi.multiprocess") is True)
        if front.paths_matter:
            path = environ.get("PATH_INFO", "/")
            if not isinstance(path, str):
                path = "/"
            if path == front.metrics_path and front.metrics is not None:
                body, content_type = front.metrics.render(environ.get("HTTP_ACCEPT"))
                headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
                return _respond(environ, start_response, Answer(200, headers, body))
            if front.exempt(path):
                return self.app(environ, start_response)
        view: RequestView | None = None
        resolved: Identity | Answer | None = None
        lean = self._lean
        if lean is not None:
            try:
                resolved = _lean_resolve(lean, self._keys, environ)
            except Exception:  # an environ the fast path does not expect: the general path
                resolved = None
        if resolved is None:
            try:
                view = _view(environ)
                identity_or_response = front.resolve(view)
                resolved = (
                    identity_or_response
                    if isinstance(identity_or_response, Identity)
                    else Answer.of(identity_or_response)
                )
            except Exception:  # an environ no server should send; still no 500
                resolved = front.decision_failed()
        if not isinstance(resolved, Identity):
            front.unanswered(resolved.status)
            return _respond(environ, start_response, resolved)
        metrics = front.metrics
        try:
            if metrics is None:
                decision = self.gate.decide(resolved)
            else:
                started = time.perf_counter()
                decision = self.gate.decide(resolved)
                metrics.observe(decision, time.perf_counter() - started)
        except Exception:  # a fault in srtm itself: logged, answered 503 (see _common)
            return _respond(environ, start_response, front.decision_failed())
        if decision.admitted < decision.offered:
            if front.on_refusal is not None:
                if view is None:
                    view = _safe_view(environ)  # built only now: the callback is given it
                if view is not None:
                    front.refused(view, decision)
            if not decision.allowed:
                return _respond(environ, start_response, front.refusal(decision))
        environ["srtm.decision"] = decision
        environ["srtm.user"] = decision.user
        return self.app(environ, _WithFields(start_response, front.text_fields(decision)))

    def close(self) -> None:
        """Stop background recomputation and release storage connections."""
        self.gate.close()


class _WithFields:
    """The server's ``start_response``, adding the two RateLimit fields to the headers.

    A slotted callable rather than a closure: one small object per admitted request.
    """

    __slots__ = ("fields", "start_response")

    def __init__(
        self, start_response: StartResponse, fields: tuple[tuple[str, str], tuple[str, str]]
    ) -> None:
        self.start_response = start_response
        self.fields = fields

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], Any]:
        return self.start_response(status, [*headers, *self.fields], exc_info)


def _lean_resolve(
    lean: Lean, keys: tuple[str, str, str], environ: dict[str, Any]
) -> Identity | Answer:
    """The fast path's identity: the two environ entries, trust, then the cached answer."""
    user_key, version_key, secret_key = keys
    if lean.guarded:
        secret = environ.get(secret_key) if lean.secret_raw is not None else None
        refused = lean.distrusted(environ.get("REMOTE_ADDR") or None, secret)
        if refused is not None:
            return refused
    return lean.identity(environ.get(user_key), environ.get(version_key))


def _environ_key(name: str) -> str:
    """Where a header lives in a WSGI environ (``HTTP_X_SERVICE_USER_ID``)."""
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def _respond(
    environ: dict[str, Any], start_response: StartResponse, answer: Answer
) -> Iterable[bytes]:
    _drain(environ)
    start_response(answer.line, [*answer.headers])  # a copy: a server may add to it
    return [answer.body]


def _drain(environ: dict[str, Any]) -> None:
    """Read and discard up to DRAIN_LIMIT of the body, so keep-alive stays usable.

    A longer body is left to the server: PEP 3333 forbids an app the hop-by-hop
    ``Connection`` header, and gunicorn and waitress discard an unread body themselves.
    """
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    length = content_length(environ.get("CONTENT_LENGTH"))
    if length is None:
        if not environ.get("wsgi.input_terminated"):
            return  # no length and no end marker: a read could block
        length = DRAIN_LIMIT
    elif length > DRAIN_LIMIT:
        return
    try:
        while length > 0:
            chunk = stream.read(min(length, 16384))
            if not chunk:
                return
            length -= len(chunk)
    except Exception:  # the client went away: nothing left to keep usable
        log.debug("srtm: reading a refused request's body failed", exc_info=True)


class _Headers(Mapping[str, str]):
    """A WSGI request's headers, read from ``environ`` only when asked for."""

    __slots__ = ("_environ",)

    def __init__(self, environ: dict[str, Any]) -> None:
        self._environ = environ

    def get(self, key: str, default: Any = None) -> Any:
        return self._environ.get(_environ_key(key), default)

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return str(value)

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").lower()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                yield key.replace("_", "-").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _safe_view(environ: dict[str, Any]) -> RequestView | None:
    """The request for ``on_refusal`` after the fast path: None if it cannot be built."""
    try:
        return _view(environ)
    except Exception:  # odd environ contents the fast path did not read: no callback, no 500
        log.debug("srtm: the refused request could not be described", exc_info=True)
        return None


def _view(environ: dict[str, Any]) -> RequestView:
    return RequestView(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=environ.get("PATH_INFO", "/"),
        headers=_Headers(environ),
        client_dn=environ.get("SSL_CLIENT_S_DN"),
        peer=environ.get("REMOTE_ADDR") or None,
        client_subject=_socket_subject(environ.get("gunicorn.socket")),
    )


def _socket_subject(sock: object) -> Subject | None:
    """The client certificate's subject from a TLS socket the server hands the app.

    gunicorn puts its connection in ``environ["gunicorn.socket"]``; with
    ``--cert-reqs 2`` the certificate was verified and ``getpeercert()`` has its subject
    already parsed by OpenSSL.
    """
    if not isinstance(sock, ssl.SSLSocket):
        return None
    cert = sock.getpeercert()
    if not cert:
        return None
    subject: Any = cert.get("subject", ())
    return tuple((str(pair[0]), str(pair[1])) for rdn in subject for pair in rdn)
