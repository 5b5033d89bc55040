"""What the ASGI and WSGI adapters share: identity, the 401 and the refusal response."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import TYPE_CHECKING

from srtm.identity import DEFAULT_POOL, Identity, Unidentified, identify_by_headers

if TYPE_CHECKING:
    from collections.abc import Collection

    from srtm.gate import Decision, GateCore
    from srtm.identity import Identify, PoolOf, RequestView

log = logging.getLogger("srtm.middleware")

Response = tuple[int, list[tuple[str, str]], bytes]


def status_line(status: int) -> str:
    """``429 Too Many Requests`` and the like, for WSGI's start_response."""
    return f"{status} {HTTPStatus(status).phrase}"


def _json(status: int, body: dict[str, object]) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    return status, headers, data


class Front:
    """Identity, pool choice and responses: everything but how bytes move."""

    def __init__(
        self,
        gate: GateCore,
        *,
        identify: Identify | None,
        pool_of: PoolOf | None,
        exempt_paths: Collection[str],
    ) -> None:
        self.gate = gate
        self.identify = identify or identify_by_headers()
        self.pool_of = pool_of
        self.exempt_paths = frozenset(exempt_paths)
        if pool_of is None and len(gate.pools) > 1:
            raise ValueError("several pools need a pool_of callable to choose one per request")
        self.only_pool = next(iter(gate.pools)) if pool_of is None else DEFAULT_POOL

    def resolve(self, request: RequestView) -> Identity | Response:
        """The request's Identity with its pool, or the response that refuses it (401/400)."""
        try:
            identity = self.identify(request)
        except Unidentified as exc:
            return _unidentified(str(exc))
        except Exception:  # a custom identify that breaks must not become a 500
            log.exception("srtm: the identify callable failed; answering 401")
            return _unidentified("the request's Service User could not be established")
        if identity is None:
            return _unidentified("the request's Service User could not be established")
        pool = self.only_pool if self.pool_of is None else self.pool_of(request)
        if pool not in self.gate.pools:
            log.error("srtm: pool_of chose %r, which is not configured", pool)
            return _json(400, {"error": "unknown-pool", "detail": f"no pool {pool!r} here"})
        if identity.pool != pool:
            identity = Identity(identity.user, identity.duis_version, pool)
        return identity


def _unidentified(detail: str) -> Response:
    status, headers, body = _json(401, {"error": "unidentified", "detail": detail})
    headers.append(("WWW-Authenticate", 'Mutual-TLS realm="srtm"'))
    return status, headers, body


def refusal(decision: Decision) -> Response:
    """The 429/503 response of a refused request."""
    body = decision.refusal_body()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *decision.refusal_headers(),
    ]
    return decision.status, headers, body
