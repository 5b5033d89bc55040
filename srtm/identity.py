"""Who sent a request, in which DUIS version, for which pool: from headers and TLS only.

The middleware decides before the body (a gateway does not parse signed XML to decide
whether to throttle). By default the User comes from ``X-Service-User-ID`` and the
version from ``X-DUIS-Version``, headers that the trusted TLS-terminating front end
sets from the client certificate; that front end must strip them from inbound traffic,
and the middleware takes them only from a front end it trusts (:class:`FrontEndTrust`:
named peer addresses and/or a shared secret header). Where the server hands the app the
client certificate itself (the ASGI ``tls`` extension, ``SSL_CLIENT_S_DN`` in a WSGI
environ, gunicorn's TLS socket), :func:`identify_by_client_certificate` reads its subject
properly (RFC 4514, through ``cryptography``). See docs/trust.md.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Final

from srtm._extras import require

__all__ = [
    "DEFAULT_POOL",
    "FrontEndTrust",
    "Identify",
    "Identity",
    "PoolOf",
    "RequestView",
    "Subject",
    "identify_by_client_certificate",
    "identify_by_headers",
    "pool_by_header",
    "pool_by_path_prefix",
]

#: The most peer addresses whose trust is remembered (the cache is emptied past it).
_PEERS_SEEN_MAX: Final = 4096

#: The pool a request joins when no pool resolver names one.
DEFAULT_POOL: Final = "default"

# A User ID is an EUI-64 in DCC practice; accept any short token of visible ASCII.
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
# HTTP's optional whitespace (RFC 9110 OWS): str.strip() would also eat NBSP and NEL,
# so "\xa0u1" would pass as "u1".
_OWS = " \t"

#: A certificate subject as the server parsed it: (attribute, value) pairs in order,
#: attribute names as Python's ``ssl`` module gives them (``commonName``...).
Subject = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RequestView:
    """What the middleware knows of a request before its body: the same for ASGI and WSGI."""

    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    client_dn: str | None = None  # the TLS client certificate's subject, where exposed
    peer: str | None = None  # the connection's remote address (None: unknown, unix socket)
    client_subject: Subject | None = None  # the subject as the server parsed it, if it did

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
#: A callable whose attribute ``reads_headers`` is False (as the certificate identity's
#: is) is not subject to :class:`FrontEndTrust` and raises no trust warning.
Identify = Callable[[RequestView], Identity | None]
#: Given a request and its sender, which pool's capacity it uses.
PoolOf = Callable[[RequestView], str]


def valid_user_id(text: str) -> bool:
    """True for a plausible User ID (1-128 visible ASCII characters, no spaces)."""
    return _USER_ID.fullmatch(text) is not None


def _version_of(request: RequestView, header: str) -> str | None:
    version = request.header(header)
    return version.strip(_OWS) if version else None


class _ByHeaders:
    """Identity from headers a trusted front end sets."""

    reads_headers = True

    def __init__(self, user_header: str, version_header: str) -> None:
        self.user_header = user_header
        self.version_header = version_header

    def __call__(self, request: RequestView) -> Identity:
        user = (request.header(self.user_header) or "").strip(_OWS)
        if not user:
            raise Unidentified(
                f"missing {self.user_header} header (set by the gateway's TLS front end)"
            )
        if not valid_user_id(user):
            raise Unidentified(f"malformed {self.user_header} header: {user[:40]!r}")
        return Identity(user=user, duis_version=_version_of(request, self.version_header))


def identify_by_headers(
    user_header: str = "X-Service-User-ID", version_header: str = "X-DUIS-Version"
) -> Identify:
    """Identity from headers a trusted front end sets (the default)."""
    return _ByHeaders(user_header, version_header)


def header_identity_names(identify: Identify) -> tuple[str, str] | None:
    """The (user, version) header names when ``identify`` is the built-in header identity.

    The middleware's fast path reads just these two headers from the raw request; any
    other callable (None here) may read anything, so it gets the whole request.
    """
    if type(identify) is _ByHeaders:
        return identify.user_header, identify.version_header
    return None


class _ByCertificate:
    """Identity from the TLS client certificate's subject: its one CN."""

    reads_headers = False  # the server, not a header, says who it is

    def __init__(self, version_header: str) -> None:
        self.version_header = version_header

    def __call__(self, request: RequestView) -> Identity:
        if request.client_subject is not None:
            names = [value for attr, value in request.client_subject if attr == "commonName"]
        elif request.client_dn:
            names = common_names(request.client_dn)
        else:
            raise Unidentified("no TLS client certificate on this connection")
        if len(names) != 1:
            # Two CNs (or an OpenSSL-style DN whose values held '/CN='): which one is
            # the User is ambiguous, and guessing is how a subject is spoofed.
            raise Unidentified(f"the client certificate's subject has {len(names)} CNs, not one")
        user = names[0]
        if not valid_user_id(user):
            raise Unidentified("the client certificate's CN is not a usable User ID")
        return Identity(user=user, duis_version=_version_of(request, self.version_header))


def identify_by_client_certificate(version_header: str = "X-DUIS-Version") -> Identify:
    """Identity from the TLS client certificate's subject CN, where the server exposes it.

    The subject is the server's structured data when it has some (gunicorn's TLS socket),
    else its DN string, parsed as RFC 4514 by ``cryptography`` (``srtm[tls]``), or the
    legacy OpenSSL ``/C=GB/O=.../CN=...`` form. A subject without exactly one CN is
    refused: ``/C=GB/O=Evil,CN=VICTIM/CN=ATTACKER`` has one CN, ``ATTACKER``.
    """
    require("identity from client certificates", "tls", "cryptography")
    return _ByCertificate(version_header)


_OPENSSL_RDN = re.compile(r"/(?=[A-Za-z][A-Za-z0-9.\-]*=)")


def common_names(dn: str) -> list[str]:
    """Every CN value of a subject DN string (RFC 4514, or OpenSSL's ``/A=b/C=d`` form).

    Raises :class:`Unidentified` when the string is not a DN.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    text = dn.strip(_OWS)
    if text.startswith("/"):
        # OpenSSL's one-line form escapes nothing: split where "/TYPE=" starts an RDN.
        # A value holding "/CN=" reads as a second CN, which the caller refuses.
        parts = [p for p in _OPENSSL_RDN.split(text[1:]) if p]
        pairs = [p.partition("=") for p in parts]
        if not pairs or any(not sep for _, sep, _ in pairs):
            raise Unidentified("the client certificate's subject is not a DN")
        return [value.strip(_OWS) for attr, _, value in pairs if attr.strip(_OWS).upper() == "CN"]
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise Unidentified("the client certificate's subject is not an RFC 4514 DN") from exc
    return [str(attr.value) for attr in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


@dataclass(frozen=True, slots=True)
class FrontEndTrust:
    """Which connections may vouch for identity headers: named peers and/or a secret.

    ``peers`` are addresses or CIDR blocks of the TLS-terminating front ends (like
    uvicorn's ``forwarded_allow_ips``); ``"*"`` trusts every peer, knowingly, and
    ``"unix:"`` a Unix-socket peer. ``secret`` is a value the front end adds to every
    request in ``secret_header``. With both, a request needs both. With neither, header
    identity is unprotected: any client can claim any User.
    """

    peers: Collection[str] = ()
    secret: str | None = None
    secret_header: str = "X-SRTM-Front-End-Secret"
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, default=()
    )
    _any_peer: bool = field(init=False, repr=False, default=False)
    _unix: bool = field(init=False, repr=False, default=False)
    # peer address -> trusted, so a connection's address is parsed once, not per request
    _seen: dict[str, bool] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.peers, str):
            raise ValueError("trusted_peers must be a collection of addresses, not one string")
        networks = []
        for entry in self.peers:
            if not isinstance(entry, str):
                raise ValueError(f"trusted_peers: {entry!r} is not an address or CIDR block")
            text = entry.strip()
            if text == "*":
                object.__setattr__(self, "_any_peer", True)
            elif text == "unix:":
                object.__setattr__(self, "_unix", True)
            else:
                try:
                    networks.append(ipaddress.ip_network(text, strict=False))
                except ValueError as exc:
                    raise ValueError(
                        f"trusted_peers: {entry!r} is not an IP address or CIDR block"
                    ) from exc
        object.__setattr__(self, "_networks", tuple(networks))
        secret = self.secret
        if secret is not None and not (
            isinstance(secret, str)
            and len(secret) >= 16
            and secret.isascii()
            and secret.isprintable()
            and secret == secret.strip()
        ):
            raise ValueError(
                "front_end_secret must be at least 16 visible ASCII characters "
                "(a header value the front end can send)"
            )

    @property
    def configured(self) -> bool:
        """Whether any trust is configured at all."""
        return bool(self.peers) or self.secret is not None

    def refuses(self, request: RequestView) -> str | None:
        """Why ``request`` did not come through a trusted front end, or None if it did."""
        if not self.configured:
            return None
        given = None if self.secret is None else request.header(self.secret_header)
        return self.refuses_raw(request.peer, given)

    def refuses_raw(self, peer: str | None, given: str | None) -> str | None:
        """:meth:`refuses` from the peer address and the secret header's value alone."""
        if self.peers and not self._trusted_peer(peer):
            return f"peer {peer or 'unknown'} is not a trusted front end"
        secret = self.secret
        if secret is None:
            return None
        if given is None or not hmac.compare_digest(
            given.encode("latin-1", "replace"), secret.encode("latin-1", "replace")
        ):
            return "the request did not come through the trusted front end"
        return None

    def _trusted_peer(self, peer: str | None) -> bool:
        if self._any_peer:
            return True
        if not peer:
            return self._unix
        if type(peer) is not str:
            return self._parsed_peer(peer)
        seen = self._seen
        trusted = seen.get(peer)
        if trusted is None:
            if len(seen) >= _PEERS_SEEN_MAX:
                seen.clear()
            trusted = seen[peer] = self._parsed_peer(peer)
        return trusted

    def _parsed_peer(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


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
