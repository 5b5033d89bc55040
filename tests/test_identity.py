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
    with pytest.raises(Unidentified, match="no usable CN"):
        identify(view(dn="O=Supplier Ltd,C=GB"))


def test_pool_choosers() -> None:
    by_path = pool_by_path_prefix({"/smets1/": "smets1", "/smets1/bulk/": "bulk"}, "smets2")
    assert by_path(view(path="/smets1/bulk/x")) == "bulk"  # the longest prefix wins
    assert by_path(view(path="/smets1/x")) == "smets1"
    assert by_path(view(path="/other")) == "smets2"
    by_header = pool_by_header("X-Meter-Generation", {"SMETS1": "smets1"}, "smets2")
    assert by_header(view({"X-Meter-Generation": "SMETS1"})) == "smets1"
    assert by_header(view({"X-Meter-Generation": "SMETS9"})) == "smets2"
    assert by_header(view()) == "smets2"
