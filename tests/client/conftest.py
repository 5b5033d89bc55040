"""Fixtures for the client tests: each behavioural test runs against both clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from srtm.client import VirtualClock

from .helpers import AsyncFacade, Facade, SyncFacade

MockScript = Callable[[int, httpx.Request], "httpx.Response | Exception"]


class MockGateway:
    """An in-process gateway for httpx's MockTransport, on a virtual clock.

    ``script(n, request)`` answers the n-th request (from 0) with a response, or an
    exception to raise as the transport would. Arrivals are logged with the clock's time.
    """

    def __init__(self, clock: VirtualClock, script: MockScript) -> None:
        self.clock = clock
        self.script = script
        self.arrivals: list[tuple[float, httpx.Request]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        n = len(self.arrivals)
        self.arrivals.append((self.clock.monotonic(), request))
        result = self.script(n, request)
        if isinstance(result, Exception):
            raise result
        return result

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def times(self) -> list[float]:
        return [t for t, _ in self.arrivals]

    def ids(self) -> list[str]:
        return [r.headers["x-request-id"] for _, r in self.arrivals]


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_client(kind: str) -> Iterator[Callable[..., Facade]]:
    """Build a client of this test's kind; whatever the test leaves open is cancelled."""
    made: list[Facade] = []

    def make(**kwargs: Any) -> Facade:
        kwargs.setdefault("base_url", "http://gateway.test")
        kwargs.setdefault("user_id", "90-B3-D5-1F-30-01-00-00")
        facade: Facade = SyncFacade(**kwargs) if kind == "sync" else AsyncFacade(**kwargs)
        made.append(facade)
        return facade

    yield make
    for facade in made:
        facade.stop()


@pytest.fixture(params=["httpx", "aiohttp"])
def wire(request: pytest.FixtureRequest) -> str:
    """The library that carries the client's requests (``transport=``)."""
    return str(request.param)


@pytest.fixture
def make_http_client(make_client: Callable[..., Facade], wire: str) -> Callable[..., Facade]:
    """``make_client`` for tests over real HTTP: each runs over httpx and over aiohttp."""

    def make(**kwargs: Any) -> Facade:
        kwargs.setdefault("transport", wire)
        return make_client(**kwargs)

    return make


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def mock_gateway(clock: VirtualClock) -> Callable[[MockScript], MockGateway]:
    def build(script: MockScript) -> MockGateway:
        return MockGateway(clock, script)

    return build
