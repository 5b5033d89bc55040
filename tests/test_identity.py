"""Who sent a request: headers, the client certificate, the pool."""

from __future__ import annotations

import pytest

from srtm import (
    Identity,
    RequestView,
    Unidentified,
    identify_by_client_certificate,
    identify_by_headers,
    pool_by_header,
    pool_by_path_prefix,
)
from srtm.identity import FrontEndTrust, header_identity_names


def view(
    headers: dict[str, str] | None = None, path: str = "/", dn: str | None = None
) -> RequestView:
    return RequestView("POST", path, {k.lower(): v for k, v in (headers or {}).items()}, dn)


def test_headers_give_user_and_version() -> None:
    identify = identify_by_headers()
    got = identify(
        view({"X-Service-User-ID": " 90-B3-D5-1F-30-01-00-00 ", "X-DUIS-Version": "4.1"})
    )
    assert got == Identity("90-B3-D5-1F-30-01-00-00", "4.1")
    assert identify(view({"X-Service-User-ID": "u1"})) == Identity("u1", None)


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({}, "missing X-Service-User-ID"),
        ({"X-Service-User-ID": "   "}, "missing"),
        ({"X-Service-User-ID": "two words"}, "malformed"),
        ({"X-Service-User-ID": "x" * 200}, "malformed"),
        ({"X-Service-User-ID": "*"}, "malformed"),
    ],
)
def test_unidentifiable_requests_say_why(headers: dict[str, str], words: str) -> None:
    with pytest.raises(Unidentified, match=words):
        identify_by_headers()(view(headers))


def test_custom_header_names() -> None:
    identify = identify_by_headers("X-Client", "X-Ver")
    assert identify(view({"X-Client": "abc", "X-Ver": "5.0"})) == Identity("abc", "5.0")


def test_client_certificate_subject_cn() -> None:
    identify = identify_by_client_certificate()
    rfc4514 = "CN=90-B3-D5-1F-30-01-00-00,O=Supplier Ltd,C=GB"
    openssl = "/C=GB/O=Supplier Ltd/CN=90-B3-D5-1F-30-01-00-00"
    for dn in (rfc4514, openssl):
        assert identify(view({"X-DUIS-Version": "4.1"}, dn=dn)).user == "90-B3-D5-1F-30-01-00-00"
    with pytest.raises(Unidentified, match="no TLS client certificate"):
        identify(view())
    with pytest.raises(Unidentified, match="0 CNs"):
        identify(view(dn="O=Supplier Ltd,C=GB"))


@pytest.mark.parametrize(
    ("dn", "user"),
    [
        # The spoof: "O=Evil,CN=VICTIM" is one O value; the one CN is ATTACKER.
        ("/C=GB/O=Evil,CN=VICTIM/CN=ATTACKER", "ATTACKER"),
        # The same subject in RFC 4514 form: the comma inside O is escaped.
        ("CN=ATTACKER,O=Evil\\,CN=VICTIM,C=GB", "ATTACKER"),
        ("CN=u1+OU=ops,O=Supplier,C=GB", "u1"),  # a multi-valued RDN
        ("2.5.4.3=u1,O=Supplier", "u1"),  # the CN by its OID
    ],
)
def test_certificate_subject_is_parsed_not_searched(dn: str, user: str) -> None:
    assert identify_by_client_certificate()(view(dn=dn)).user == user


@pytest.mark.parametrize(
    ("dn", "words"),
    [
        ("CN=VICTIM,CN=ATTACKER,O=x", "2 CNs"),  # two CNs: ambiguous, refused
        ("/C=GB/O=Evil/CN=VICTIM/CN=ATTACKER", "2 CNs"),  # OpenSSL form cannot say which
        ("CN=ATTACKER\\,O=x", "not a usable"),  # the escaped comma is part of the CN
        ("not a dn", "not an RFC 4514"),
        ("/no equals sign", "not a DN"),
        ("CN=", "not an RFC 4514"),
        ("cn=u1,o=Supplier", "not an RFC 4514"),  # cryptography wants upper-case types
    ],
)
def test_ambiguous_or_broken_subjects_are_refused(dn: str, words: str) -> None:
    with pytest.raises(Unidentified, match=words):
        identify_by_client_certificate()(view(dn=dn))


def test_structured_subject_from_the_server_wins_over_the_dn_string() -> None:
    identify = identify_by_client_certificate()
    subject = (("countryName", "GB"), ("organizationName", "Evil,CN=VICTIM"), ("commonName", "A"))
    request = RequestView("POST", "/", {}, client_dn="CN=VICTIM", client_subject=subject)
    assert identify(request).user == "A"
    two = RequestView("POST", "/", {}, client_subject=(("commonName", "A"), ("commonName", "B")))
    with pytest.raises(Unidentified, match="2 CNs"):
        identify(two)


@pytest.mark.parametrize(
    "value",
    [
        "\xa0u1",  # NBSP: str.strip() would remove it and let "u1" through
        "u1\x85",  # NEL, likewise
        "u1\n",  # a regex "$" matches before a final newline; fullmatch does not
        "\u0661\u0662",  # Arabic-Indic digits: isdigit() but not ASCII
        "u\xb9",  # superscript one
        "-u1",
    ],
)
def test_user_ids_are_strict_ascii_tokens(value: str) -> None:
    with pytest.raises(Unidentified, match="malformed"):
        identify_by_headers()(view({"X-Service-User-ID": value}))


def test_http_whitespace_around_a_user_id_is_allowed() -> None:
    assert identify_by_headers()(view({"X-Service-User-ID": " \tu1\t "})).user == "u1"


def peer_view(peer: str | None, headers: dict[str, str] | None = None) -> RequestView:
    return RequestView("POST", "/", {k.lower(): v for k, v in (headers or {}).items()}, peer=peer)


def test_trusted_peers_by_address_and_block() -> None:
    trust = FrontEndTrust(["10.1.0.0/16", "192.0.2.7", "2001:db8::/32"])
    assert trust.configured
    for ok in ("10.1.200.3", "192.0.2.7", "::ffff:10.1.0.9", "2001:db8::1"):
        assert trust.refuses(peer_view(ok)) is None, ok
    for bad in ("10.2.0.1", "192.0.2.8", "2001:db9::1", "not-an-ip", "", None):
        reason = trust.refuses(peer_view(bad))
        assert reason is not None
        assert "not a trusted front end" in reason
    assert FrontEndTrust(["unix:"]).refuses(peer_view(None)) is None
    assert FrontEndTrust(["*"]).refuses(peer_view("203.0.113.9")) is None
    assert not FrontEndTrust().configured


def test_shared_secret_and_both_checks() -> None:
    secret = "s3cret-front-end-value"
    trust = FrontEndTrust(secret=secret, secret_header="X-Front")
    assert trust.refuses(peer_view("203.0.113.9", {"X-Front": secret})) is None
    assert trust.refuses(peer_view("203.0.113.9", {"X-Front": secret + "x"})) is not None
    assert trust.refuses(peer_view("203.0.113.9", {"X-Front": "\xff" * 22})) is not None
    assert trust.refuses(peer_view("203.0.113.9")) is not None
    both = FrontEndTrust(["127.0.0.1"], secret)
    assert both.refuses(peer_view("127.0.0.1", {"X-SRTM-Front-End-Secret": secret})) is None
    assert both.refuses(peer_view("127.0.0.2", {"X-SRTM-Front-End-Secret": secret})) is not None
    assert both.refuses(peer_view("127.0.0.1")) is not None


def test_trust_from_peer_and_secret_alone_matches_the_request_check() -> None:
    """refuses_raw (the middleware's fast path) says what refuses says of the request,
    and the per-peer memory answers the same the second time, past its bound too."""
    from srtm import identity

    secret = "s3cret-front-end-value"
    trust = FrontEndTrust(["10.1.0.0/16", "unix:"], secret)
    peers = ["10.1.2.3", "10.2.0.1", "::ffff:10.1.0.9", "fe80::1%2", "not-an-ip", "", None]
    for _ in range(2):
        for peer in peers:
            for given in (secret, secret + "x", None):
                headers = {} if given is None else {"X-SRTM-Front-End-Secret": given}
                assert trust.refuses_raw(peer, given) == trust.refuses(peer_view(peer, headers))
    for k in range(identity._PEERS_SEEN_MAX + 10):  # a flood of addresses: bounded memory
        assert trust.refuses_raw(f"10.1.{k // 250 % 250}.{k % 250}", secret) is None
    assert len(trust._seen) <= identity._PEERS_SEEN_MAX
    assert trust.refuses_raw("10.2.0.1", secret) is not None
    assert trust == FrontEndTrust(["10.1.0.0/16", "unix:"], secret)  # memory is not state


def test_header_identity_names_only_for_the_built_in_identity() -> None:
    assert header_identity_names(identify_by_headers()) == ("X-Service-User-ID", "X-DUIS-Version")
    assert header_identity_names(identify_by_headers("A", "B")) == ("A", "B")
    default = identify_by_headers()
    assert header_identity_names(lambda request: default(request)) is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"peers": "10.0.0.1"}, "not one string"),
        ({"peers": ["10.0.0.300"]}, "not an IP address"),
        ({"peers": ["example.com"]}, "not an IP address"),
        ({"secret": "short"}, "at least 16"),
        ({"secret": "x" * 15 + "\n"}, "visible ASCII"),
    ],
)
def test_bad_trust_settings_say_what_is_wrong(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        FrontEndTrust(**kwargs)  # type: ignore[arg-type]


def test_pool_choosers() -> None:
    by_path = pool_by_path_prefix({"/smets1/": "smets1", "/smets1/bulk/": "bulk"}, "smets2")
    assert by_path(view(path="/smets1/bulk/x")) == "bulk"  # the longest prefix wins
    assert by_path(view(path="/smets1/x")) == "smets1"
    assert by_path(view(path="/other")) == "smets2"
    by_header = pool_by_header("X-Meter-Generation", {"SMETS1": "smets1"}, "smets2")
    assert by_header(view({"X-Meter-Generation": "SMETS1"})) == "smets1"
    assert by_header(view({"X-Meter-Generation": "SMETS9"})) == "smets2"
    assert by_header(view()) == "smets2"
