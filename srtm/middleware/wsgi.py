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
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from srtm.gate import Gate
from srtm.identity import FrontEndTrust, Identity, RequestView
from srtm.middleware._common import DRAIN_LIMIT, Front, content_length, refusal, status_line

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable
    from types import TracebackType

    from srtm.identity import Identify, PoolOf, Subject
    from srtm.middleware._common import ExemptPaths, MetricsSink, OnRefusal, Response
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

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ["srtm.gate"] = self.gate
        front = self._front
        front.check_workers(environ.get("wsgi.multiprocess") is True)
        path = environ.get("PATH_INFO", "/")
        if not isinstance(path, str):
            path = "/"
        if path == front.metrics_path and front.metrics is not None:
            body, content_type = front.metrics.render(environ.get("HTTP_ACCEPT"))
            headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
            return _respond(environ, start_response, (200, headers, body))
        if front.exempt(path):
            return self.app(environ, start_response)
        try:
            view = _view(environ)
            resolved = front.resolve(view)
        except Exception:  # an environ no server should send; still no 500
            resolved = front.decision_failed()
        if not isinstance(resolved, Identity):
            front.unanswered(resolved)
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
            front.refused(view, decision)
            if not decision.allowed:
                return _respond(environ, start_response, refusal(decision))
        extra = decision.rate_limit_headers()

        def start_with_fields(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], Any]:
            return start_response(status, [*headers, *extra], exc_info)

        environ["srtm.decision"] = decision
        environ["srtm.user"] = decision.user
        return self.app(environ, start_with_fields)

    def close(self) -> None:
        """Stop background recomputation and release storage connections."""
        self.gate.close()


def _respond(
    environ: dict[str, Any], start_response: StartResponse, response: Response
) -> Iterable[bytes]:
    status, headers, body = response
    _drain(environ)
    start_response(status_line(status), headers)
    return [body]


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
        name = key.upper().replace("-", "_")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            return self._environ.get(name, default)
        return self._environ.get("HTTP_" + name, default)

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
