"""The transport argument: httpx (the default) or aiohttp (the ``aiohttp`` extra).

Behaviour over real HTTP is tested on both wires by the ``make_http_client`` fixture (the
plain-gateway, end-to-end, exit and outcome-unknown tests); here is what belongs to the
choice itself: choosing it, its missing extra, URLs and answers as httpx gives them, and
a connection that drops after the request was written.
"""

from __future__ import annotations

import gzip
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from srtm._extras import MissingExtraError
from srtm.client import (
    AsyncServiceRequestClient,
    OutcomeUnknownError,
    ServiceRequestClient,
)

from .helpers import Facade, Reply, Request, ScriptApp, serve, sr

Make = Callable[..., Facade]


@pytest.mark.parametrize("client", [ServiceRequestClient, AsyncServiceRequestClient])
def test_without_the_extra_the_error_names_it(
    client: type[ServiceRequestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if it were not installed
    with pytest.raises(MissingExtraError) as raised:
        client(base_url="http://gw", user_id="u", transport="aiohttp")
    assert raised.value.extra == "aiohttp"
    assert "pip install 'srtm[aiohttp]'" in str(raised.value)


@pytest.mark.parametrize("client", [ServiceRequestClient, AsyncServiceRequestClient])
@pytest.mark.parametrize("name", ["curl", "AIOHTTP", ""])
def test_an_unknown_transport_name_is_refused(
    client: type[ServiceRequestClient], name: str
) -> None:
    with pytest.raises(ValueError, match=r"transport: must be one of 'httpx', 'aiohttp'"):
        client(base_url="http://gw", user_id="u", transport=name)  # type: ignore[arg-type]


def test_paths_join_the_base_url_and_answers_arrive_as_sent(make_http_client: Make) -> None:
    async def answer(request: Request) -> Reply:
        return Reply(201, {"X-Answer": request.path}, b"<Done/>")

    app = ScriptApp(answer)
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url + "/dcc/api")
        response = client.send(sr("2.2", path="/sr", request_id="top-up-1"))
        client.close()
    # httpx's rule on both wires: the path is appended to the base URL's path.
    assert response.raise_for_status() is response  # it has its request to name
    assert [(a.request_id, a.status) for a in app.log] == [("top-up-1", 201)]
    assert response.headers["x-answer"] == "/dcc/api/sr"
    assert response.content == b"<Done/>"
    assert response.status_code == 201
    assert str(response.request.url) == url + "/dcc/api/sr"
    assert response.request.headers["x-request-id"] == "top-up-1"


@contextmanager
def hanging_up_server() -> Iterator[tuple[str, list[bytes]]]:
    """A raw TCP server that reads each request whole, then closes without answering."""
    received: list[bytes] = []
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve_one(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            received.append(head)  # the whole request arrived: it may have been processed

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=10)


def test_a_connection_dropped_after_sending_is_outcome_unknown(make_http_client: Make) -> None:
    with hanging_up_server() as (url, received):
        client = make_http_client(base_url=url, max_in_flight=1)
        future = client.submit(sr("2.2", request_id="top-up-1"))
        error = future.exception(timeout=60)
        handed_back = client.close(cancel=True)
    assert isinstance(error, OutcomeUnknownError)
    assert isinstance(error.__cause__, httpx.TransportError)  # httpx's, whichever library
    assert len(received) == 1
    assert b"x-request-id: top-up-1" in received[0].lower()
    assert handed_back == []  # never called unsent
    assert [s.request_id for s in client.client.outcome_unknown] == ["top-up-1"]


def test_an_encoded_answer_reads_as_httpx_reads_it(make_http_client: Make) -> None:
    """A gzip-encoded body arrives decoded once (aiohttp decodes it; nothing decodes it
    again), and the response is read and closed, as httpx's own would be."""
    body = b"<Response>" + b"x" * 1000 + b"</Response>"

    async def answer(request: Request) -> Reply:
        return Reply(200, {"Content-Encoding": "gzip"}, gzip.compress(body))

    app = ScriptApp(answer)
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url)
        response = client.send(sr("4.8.1"))
        client.close()
    assert response.content == body
    assert response.text == body.decode()
    assert b"".join(response.iter_bytes()) == body
    assert response.is_closed
    assert response.is_stream_consumed


def test_a_success_needs_no_request_to_check_and_an_error_names_it(
    make_http_client: Make,
) -> None:
    """``raise_for_status()`` on either wire: a 2xx passes, a 4xx names the request."""

    async def answer(request: Request) -> Reply:
        return Reply(404 if request.request_id == "missing" else 200, {}, b"<R/>")

    app = ScriptApp(answer)
    with serve(app, started=app.started) as url:
        client = make_http_client(base_url=url)
        ok = client.send(sr("2.2", path="/sr", request_id="found"))
        missing = client.send(sr("2.2", path="/sr", request_id="missing"))
        client.close()
    assert ok.raise_for_status() is ok
    assert ok.request.headers["x-request-id"] == "found"
    with pytest.raises(httpx.HTTPStatusError) as raised:
        missing.raise_for_status()
    assert raised.value.request.headers["x-request-id"] == "missing"
    assert str(raised.value.request.url) == url + "/sr"
    assert raised.value.response is missing
