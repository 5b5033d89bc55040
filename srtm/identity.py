"""Who sent a request, in which DUIS version, for which pool: from headers and TLS only.

The middleware never reads the body (a gateway does not parse signed XML to decide
whether to throttle). By default the User comes from ``X-Service-User-ID`` and the
version from ``X-DUIS-Version``, headers that the trusted TLS-terminating front end
sets from the client certificate; strip them from inbound traffic at that front end.
Where the server exposes the client certificate itself (the ASGI ``tls`` extension,
``SSL_CLIENT_S_DN`` in a WSGI environ), :func:`identify_by_client_certificate` reads it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_POOL",
    "Identify",
    "Identity",
    "PoolOf",
    "RequestView",
    "identify_by_client_certificate",
    "identify_by_headers",
    "pool_by_header",
    "pool_by_path_prefix",
]

DEFAULT_POOL = "default"

# A User ID is an EUI-64 in DCC practice; accept any short token of visible characters.
_USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


@dataclass(frozen=True, slots=True)
class RequestView:
    """What the middleware knows of a request before its body: the same for ASGI and WSGI."""

    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    client_dn: str | None = None  # the TLS client certificate's subject, where exposed

    def header(self, name: str) -> str | None:
        """A header's value by case-insensitive name."""
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True)
class Identity:
    """The User a request is counted against, its DUIS version, and its pool."""

    user: str
    duis_version: str | None = None
    pool: str = DEFAULT_POOL


class Unidentified(Exception):
    """Raised by an identify callable to refuse a request with 401 and this reason."""


#: Given a request, who sent it (None or :class:`Unidentified`: answer 401).
Identify = Callable[[RequestView], Identity | None]
#: Given a request and its sender, which pool's capacity it uses.
PoolOf = Callable[[RequestView], str]


def valid_user_id(text: str) -> bool:
    """True for a plausible User ID (1-128 visible characters, no spaces)."""
    return bool(_USER_ID.match(text))


def identify_by_headers(
    user_header: str = "X-Service-User-ID", version_header: str = "X-DUIS-Version"
) -> Identify:
    """Identity from headers a trusted front end sets (the default)."""

    def identify(request: RequestView) -> Identity:
        user = (request.header(user_header) or "").strip()
        if not user:
            raise Unidentified(f"missing {user_header} header (set by the gateway's TLS front end)")
        if not valid_user_id(user):
            raise Unidentified(f"malformed {user_header} header: {user[:40]!r}")
        version = request.header(version_header)
        return Identity(user=user, duis_version=version.strip() if version else None)

    return identify


def identify_by_client_certificate(version_header: str = "X-DUIS-Version") -> Identify:
    """Identity from the TLS client certificate's subject CN, where the server exposes it."""

    def identify(request: RequestView) -> Identity:
        if not request.client_dn:
            raise Unidentified("no TLS client certificate on this connection")
        match = re.search(r"(?:^|[,/])\s*CN\s*=\s*([^,/]+)", request.client_dn)
        user = match.group(1).strip() if match else ""
        if not valid_user_id(user):
            raise Unidentified("the client certificate's subject has no usable CN")
        version = request.header(version_header)
        return Identity(user=user, duis_version=version.strip() if version else None)

    return identify


def pool_by_path_prefix(prefixes: Mapping[str, str], default: str = DEFAULT_POOL) -> PoolOf:
    """Pool from the request path: the longest matching prefix wins."""
    ordered = sorted(prefixes.items(), key=lambda item: len(item[0]), reverse=True)

    def pool_of(request: RequestView) -> str:
        for prefix, pool in ordered:
            if request.path.startswith(prefix):
                return pool
        return default

    return pool_of


def pool_by_header(name: str, values: Mapping[str, str], default: str = DEFAULT_POOL) -> PoolOf:
    """Pool from a header's value (for example the meter generation a front end sets)."""

    def pool_of(request: RequestView) -> str:
        return values.get((request.header(name) or "").strip(), default)

    return pool_of
