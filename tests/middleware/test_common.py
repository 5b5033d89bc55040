"""What both adapters share: exemptions, trust, no 500 from faults, the worker warning."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import warnings
from typing import TYPE_CHECKING, Any

import pytest

from srtm import Identity, TrafficPolicy, identify_by_client_certificate
from srtm.aio.gate import AsyncGate
from srtm.gate import Gate
from srtm.middleware import ASGITrafficManager, WSGITrafficManager

if TYPE_CHECKING:
    from srtm.gate import Decision
    from srtm.identity import RequestView

POLICY = TrafficPolicy(capacity=100, allocations={"u1": 10})
TRUST = {"trusted_peers": ["127.0.0.1"]}
WHO = {"HTTP_X_SERVICE_USER_ID": "u1", "HTTP_X_DUIS_VERSION": "4.1"}


def ok_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def call_wsgi(app: WSGITrafficManager, path: str = "/sr", **environ: Any) -> tuple[int, Any]:
    """One request through the WSGI middleware: (status, parsed JSON body or raw bytes)."""
    statuses: list[str] = []
    base = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "REMOTE_ADDR": "127.0.0.1"}
    body = b"".join(app({**base, **environ}, lambda s, h, e=None: statuses.append(s)))
    status = int(statuses[0].split()[0])
    return status, (json.loads(body) if status != 200 else body)


async def call_asgi(
    app: ASGITrafficManager, path: str = "/sr", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes, dict[str, Any]]:
    """One request through the ASGI middleware: (status, headers, body, the scope)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 40000),
    }
    await app(scope, receive, send)
    response = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], response, sent[1]["body"], scope


async def ok_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


# -- exempt paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("/health", True),
        ("/health/", True),  # a trailing slash was a 401 before
        ("/health/live", True),
        ("/healthz", False),  # a prefix of the name is not a sub-path
        ("/docs", True),
        ("/docs/oauth2-redirect", True),  # FastAPI's docs sub-paths
        ("/health/../sr", False),  # dot segments never pass as exempt
        ("/health/./x", False),
        ("/sr", False),
    ],
)
def test_exempt_paths_cover_sub_paths(path: str, exempt: bool) -> None:
    app = WSGITrafficManager(
        ok_app, POLICY, exempt_paths={"/health", "/docs/"}, background=False, **TRUST
    )
    status, _ = call_wsgi(app, path)
    assert status == (200 if exempt else 401)


def test_exempt_predicate_and_a_broken_one(caplog: pytest.LogCaptureFixture) -> None:
    app = WSGITrafficManager(
        ok_app, POLICY, exempt_paths=lambda p: p.endswith(".css"), background=False, **TRUST
    )
    assert call_wsgi(app, "/static/a.css")[0] == 200
    assert call_wsgi(app, "/sr")[0] == 401

    def broken(path: str) -> bool:
        raise RuntimeError("bug")

    app = WSGITrafficManager(ok_app, POLICY, exempt_paths=broken, background=False, **TRUST)
    assert call_wsgi(app, "/a.css")[0] == 401  # not exempt: identification still runs
    assert "exempt_paths predicate failed" in caplog.text


@pytest.mark.parametrize(
    ("exempt", "words"),
    [
        ("/health", "not one string"),
        (["health"], "not an absolute path"),
        (["/"], "every path"),
        (["/a/../b"], "not an absolute path"),
    ],
)
def test_bad_exempt_paths_say_what_is_wrong(exempt: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        WSGITrafficManager(ok_app, POLICY, exempt_paths=exempt, background=False, **TRUST)


# -- the same keys on both, and a gate handed in --------------------------------------------


async def test_both_adapters_leave_the_same_keys() -> None:
    gate = AsyncGate(POLICY, background=False)
    asgi = ASGITrafficManager(ok_asgi, gate=gate, exempt_paths=["/health"], **TRUST)
    status, _, _, scope = await call_asgi(
        asgi, headers={"X-Service-User-ID": "u1", "X-DUIS-Version": "4.1"}
    )
    assert status == 200
    assert scope["srtm.gate"] is gate
    assert scope["srtm.user"] == "u1"
    assert scope["srtm.decision"].user == "u1"
    _, _, _, exempt = await call_asgi(asgi, "/health")
    assert exempt["srtm.gate"] is gate
    assert "srtm.decision" not in exempt
    await gate.close()

    seen: list[dict[str, Any]] = []

    def remember(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ)
        return ok_app(environ, start_response)

    sync_gate = Gate(POLICY, background=False)
    wsgi = WSGITrafficManager(remember, gate=sync_gate, **TRUST)
    assert call_wsgi(wsgi, **WHO)[0] == 200
    keys = {k for k in seen[0] if k.startswith("srtm.")}
    assert (
        keys
        == {k for k in scope if k.startswith("srtm.")}
        == {
            "srtm.gate",
            "srtm.decision",
            "srtm.user",
        }
    )
    assert seen[0]["srtm.gate"] is sync_gate


def test_gate_or_policy_not_both_and_the_right_kind() -> None:
    gate = Gate(POLICY, background=False)
    with pytest.raises(TypeError, match="needs a policy or a gate"):
        WSGITrafficManager(ok_app)
    with pytest.raises(TypeError, match="not both"):
        WSGITrafficManager(ok_app, POLICY, gate=gate)
    with pytest.raises(TypeError, match="not both"):
        WSGITrafficManager(ok_app, gate=gate, background=False)
    with pytest.raises(TypeError, match="AsyncGate"):
        ASGITrafficManager(ok_asgi, gate=gate)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"srtm\.Gate"):
        WSGITrafficManager(ok_app, gate=AsyncGate(POLICY, background=False))  # type: ignore[arg-type]


# -- trust ------------------------------------------------------------------------------------


def test_one_loud_warning_without_trust(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "srtm.middleware"):
        app = WSGITrafficManager(ok_app, POLICY, background=False)
        for _ in range(3):
            call_wsgi(app, **WHO)
    warnings = [r for r in caplog.records if "NOT PROTECTED" in r.getMessage()]
    assert len(warnings) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, "srtm.middleware"):
        WSGITrafficManager(ok_app, POLICY, background=False, trusted_peers=["10.0.0.0/8"])
        WSGITrafficManager(ok_app, POLICY, background=False, front_end_secret="x" * 20)
        WSGITrafficManager(
            ok_app, POLICY, background=False, identify=identify_by_client_certificate()
        )
    assert "NOT PROTECTED" not in caplog.text


def test_headers_from_an_untrusted_peer_are_not_an_identity() -> None:
    app = WSGITrafficManager(ok_app, POLICY, background=False, trusted_peers=["10.0.0.0/8"])
    status, body = call_wsgi(app, **WHO)  # from 127.0.0.1
    assert status == 401
    assert "127.0.0.1 is not a trusted front end" in body["detail"]
    assert call_wsgi(app, **{**WHO, "REMOTE_ADDR": "10.9.8.7"})[0] == 200
    secret = "the-front-end-secret-value"
    app = WSGITrafficManager(ok_app, POLICY, background=False, front_end_secret=secret)
    assert call_wsgi(app, **WHO)[0] == 401
    assert call_wsgi(app, **WHO, HTTP_X_SRTM_FRONT_END_SECRET=secret)[0] == 200


# -- no exception becomes a 500 -----------------------------------------------------------


class BrokenGate(Gate):
    """A real gate whose decision raises: a bug in srtm, as the middleware sees one."""

    def decide(self, identity: Identity, n: int = 1, *, now: float | None = None) -> Decision:
        raise ZeroDivisionError("a bug")


class BrokenAsyncGate(AsyncGate):
    """The async twin."""

    async def decide(self, identity: Identity, n: int = 1, *, now: float | None = None) -> Decision:
        raise ZeroDivisionError("a bug")


def test_a_failing_decision_is_a_503_logged_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = WSGITrafficManager(ok_app, gate=BrokenGate(POLICY, background=False), **TRUST)
    with caplog.at_level(logging.ERROR, "srtm.middleware"):
        answers = [call_wsgi(app, **WHO) for _ in range(5)]
    assert {status for status, _ in answers} == {503}
    assert answers[0][1]["error"] == "unavailable"
    assert answers[0][1]["retry_after"] == 1
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # a flood of failures is not a flood of tracebacks
    assert "ZeroDivisionError" in caplog.text


async def test_a_failing_async_decision_is_a_503_with_retry_after() -> None:
    app = ASGITrafficManager(ok_asgi, gate=BrokenAsyncGate(POLICY, background=False), **TRUST)
    status, headers, body, _ = await call_asgi(app, headers={"X-Service-User-ID": "u1"})
    assert status == 503
    assert headers["retry-after"] == "1"
    assert json.loads(body)["error"] == "unavailable"


def test_failing_identify_and_pool_of_are_401_and_503(caplog: pytest.LogCaptureFixture) -> None:
    def identify(request: RequestView) -> Identity:
        raise KeyError("bug")

    app = WSGITrafficManager(ok_app, POLICY, identify=identify, background=False, **TRUST)
    assert call_wsgi(app, **WHO)[0] == 401
    assert "identify callable failed" in caplog.text

    def weird(request: RequestView) -> Identity:
        return Identity("has space")  # a custom identify returning a User ID nobody can be

    app = WSGITrafficManager(ok_app, POLICY, identify=weird, background=False, **TRUST)
    assert call_wsgi(app, **WHO)[0] == 401

    def pool_of(request: RequestView) -> str:
        raise ValueError("bug")

    app = WSGITrafficManager(ok_app, POLICY, pool_of=pool_of, background=False, **TRUST)
    assert call_wsgi(app, **WHO)[0] == 503
    app = WSGITrafficManager(ok_app, POLICY, pool_of=lambda r: "nope", background=False, **TRUST)
    status, body = call_wsgi(app, **WHO)
    assert status == 503
    assert body["error"] == "unavailable"


# -- bodies of refusals are drained (WSGI) -----------------------------------------------------


@pytest.mark.parametrize(
    ("length", "terminated", "size", "read"),
    [
        ("100", False, 100, 100),  # read to its end: the connection can carry on
        ("65536", False, 65536, 65536),
        ("70000", False, 70000, 0),  # past the bound: left to the server
        (None, True, 100_000, 65536),  # no length, input terminated: read up to the bound
        (None, False, 100, 0),  # no length, no end marker: a read could block
        ("\xb9", False, 100, 0),  # not a length: do not guess
    ],
)
def test_wsgi_refusal_drains_a_bounded_body(
    length: str | None, terminated: bool, size: int, read: int
) -> None:
    app = WSGITrafficManager(ok_app, POLICY, background=False, **TRUST)
    stream = io.BytesIO(b"x" * size)
    environ: dict[str, Any] = {"wsgi.input": stream, "wsgi.input_terminated": terminated}
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    assert call_wsgi(app, **environ)[0] == 401
    assert stream.tell() == read


# -- memory:// in several workers --------------------------------------------------------------


def test_memory_storage_in_a_forked_worker_warns_once() -> None:
    app = WSGITrafficManager(ok_app, POLICY, background=False, **TRUST)
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() with threads alive; the child only runs this.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the worker: count its warnings and report them to the parent
        try:
            records: list[str] = []
            handler = logging.Handler()
            handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
            logger = logging.getLogger("srtm.middleware")
            # Whatever logging configuration earlier tests left, this logger speaks here.
            logger.disabled = False
            logger.setLevel(logging.WARNING)
            logger.addHandler(handler)
            statuses = [call_wsgi(app, **WHO)[0] for _ in range(3)]
            os.write(write_end, pickle.dumps((statuses, records)))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        statuses, records = pickle.loads(pipe.read())
    os.waitpid(pid, 0)
    assert statuses == [200, 200, 200]
    assert len([r for r in records if "several worker processes" in r]) == 1
    # The parent, which built the middleware, is no worker of anybody's.
    assert call_wsgi(app, **WHO)[0] == 200


def test_wsgi_multiprocess_flag_warns_unless_the_store_is_shared(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "srtm.middleware"):
        app = WSGITrafficManager(ok_app, POLICY, background=False, **TRUST)
        call_wsgi(app, **WHO)
        assert "several worker processes" not in caplog.text
        for _ in range(2):
            call_wsgi(app, **WHO, **{"wsgi.multiprocess": True})
        split = TrafficPolicy(capacity=100, nodes=2)  # the operator split it knowingly
        quiet = WSGITrafficManager(ok_app, split, background=False, **TRUST)
        call_wsgi(quiet, **WHO, **{"wsgi.multiprocess": True})
    assert caplog.text.count("several worker processes") == 1
