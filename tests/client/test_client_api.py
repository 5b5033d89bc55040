"""The public surface of srtm.client: complete, importable, one exception tree."""

from __future__ import annotations

import dataclasses
import inspect
import ssl
import types
from typing import TYPE_CHECKING

import pytest

import srtm
import srtm.client
from srtm.client import (
    AsyncServiceRequestClient,
    ClientError,
    PriorityPolicy,
    RateLimitPolicy,
    RefusalRule,
    RetryPolicy,
    ServiceRequest,
    ServiceRequestClient,
)

if TYPE_CHECKING:
    import pathlib


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(srtm.client).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(srtm.client.__all__)


@pytest.mark.parametrize("name", srtm.client.__all__)
def test_every_public_name_is_documented(name: str) -> None:
    value = getattr(srtm.client, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        assert inspect.getdoc(value), f"{name} has no docstring"


def test_every_client_error_is_an_srtm_error() -> None:
    errors = [
        getattr(srtm.client, n)
        for n in srtm.client.__all__
        if inspect.isclass(getattr(srtm.client, n))
        and issubclass(getattr(srtm.client, n), BaseException)
    ]
    assert len(errors) == 8
    assert all(issubclass(e, ClientError) for e in errors)
    assert issubclass(ClientError, srtm.SrtmError)


@pytest.mark.parametrize(
    "value", [ServiceRequest, RetryPolicy, PriorityPolicy, RefusalRule, RateLimitPolicy]
)
def test_values_are_frozen_slotted_dataclasses(value: type) -> None:
    assert dataclasses.is_dataclass(value)
    assert "__slots__" in vars(value)
    params = value.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen


@pytest.mark.parametrize("client", [ServiceRequestClient, AsyncServiceRequestClient])
def test_configuration_is_keyword_only(client: type) -> None:
    parameters = list(inspect.signature(client).parameters.values())
    assert parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters)


def test_the_two_clients_take_the_same_configuration() -> None:
    sync = inspect.signature(ServiceRequestClient).parameters
    async_ = inspect.signature(AsyncServiceRequestClient).parameters
    assert list(sync) == list(async_)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variant": ""}, "variant"),
        ({"path": "sr"}, "path"),
        ({"deadline": 0}, "deadline"),
        ({"deadline": float("inf")}, "deadline"),
        ({"request_id": ""}, "request_id"),
    ],
)
def test_a_bad_sr_says_what_is_wrong(kwargs: dict[str, object], match: str) -> None:
    fields: dict[str, object] = {"variant": "2.2", "body": b"<Request/>", **kwargs}
    with pytest.raises(ValueError, match=match):
        ServiceRequest(**fields)  # type: ignore[arg-type]


def test_an_sr_body_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="body"):
        ServiceRequest(variant="2.2", body="<Request/>")  # type: ignore[arg-type]


def test_an_sr_is_hashable_and_gets_a_fresh_request_id() -> None:
    a = ServiceRequest(variant="2.2", body=b"x", headers={"X-Trace": "1"})  # type: ignore[arg-type]
    b = ServiceRequest(variant="2.2", body=b"x")
    assert a.request_id != b.request_id
    assert a.headers == (("X-Trace", "1"),)
    assert len({a, b}) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_retry_after": 0}, "max_retry_after"),
        ({"jitter": -1}, "jitter"),
        ({"backoff_initial": 2.0, "backoff_max": 1.0}, "backoff_max"),
        ({"budget_ratio": float("nan")}, "budget_ratio"),
        ({"deadline": -5}, "deadline"),
    ],
)
def test_a_bad_retry_policy_says_what_is_wrong(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"user_id": ""}, "user_id"),
        ({"duis_version": " "}, "duis_version"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"rate": -1.0}, "rate"),
        ({"pace_factor": 1.5}, "pace_factor"),
    ],
)
def test_a_bad_client_configuration_says_what_is_wrong(
    kwargs: dict[str, object], match: str
) -> None:
    options: dict[str, object] = {"base_url": "http://gateway.test", "user_id": "u", **kwargs}
    with pytest.raises(ValueError, match=match):
        ServiceRequestClient(**options)  # type: ignore[arg-type]


def test_tls_settings_reach_the_ssl_context(tmp_path: pathlib.Path) -> None:
    from srtm.client._client import _ssl_context

    assert _ssl_context(False, None).verify_mode is ssl.CERT_NONE
    assert _ssl_context(True, None).verify_mode is ssl.CERT_REQUIRED
    given = ssl.create_default_context()
    assert _ssl_context(given, None) is given
    # The client certificate is loaded into the context (a missing file says so).
    with pytest.raises(FileNotFoundError):
        _ssl_context(True, (str(tmp_path / "user.pem"), str(tmp_path / "user.key")))
    with pytest.raises(FileNotFoundError):
        _ssl_context(str(tmp_path / "no-such-ca.pem"), None)
