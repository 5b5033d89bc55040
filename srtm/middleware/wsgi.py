"""WSGI middleware: traffic management in front of any WSGI gateway app.

``WSGITrafficManager(app, policy)`` wraps a Flask or Django (or any WSGI) app. Per
request it identifies the Service User from headers (or ``SSL_CLIENT_S_DN`` where the
server sets it), asks the gate, and either calls the app, adding the ``RateLimit``
fields to its response, or answers 429/503 with ``Retry-After`` itself. It never reads
``wsgi.input``. The decision is left in ``environ["srtm.decision"]`` for the app.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from srtm.gate import Gate
from srtm.identity import Identity, RequestView
from srtm.middleware._common import Front, refusal, status_line

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable
    from types import TracebackType

    from srtm.identity import Identify, PoolOf
    from srtm.policy import TrafficPolicy

    ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
    StartResponse = Callable[..., Callable[[bytes], Any]]
    WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

__all__ = ["WSGITrafficManager"]


class WSGITrafficManager:
    """Share a back end's capacity fairly across Service Users (WSGI)."""

    def __init__(
        self,
        app: WSGIApp,
        policy: TrafficPolicy | Mapping[str, TrafficPolicy],
        *,
        identify: Identify | None = None,
        pool_of: PoolOf | None = None,
        exempt_paths: Collection[str] = (),
        clock: Callable[[], float] = time.time,
        background: bool = True,
    ) -> None:
        self.app = app
        self.gate = Gate(policy, clock=clock, background=background)
        self._front = Front(
            self.gate, identify=identify, pool_of=pool_of, exempt_paths=exempt_paths
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") in self._front.exempt_paths:
            return self.app(environ, start_response)
        resolved = self._front.resolve(_view(environ))
        if not isinstance(resolved, Identity):
            status, headers, body = resolved
            start_response(status_line(status), headers)
            return [body]
        decision = self.gate.decide(resolved)
        if not decision.allowed:
            status, headers, body = refusal(decision)
            start_response(status_line(status), headers)
            return [body]
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
    )
