"""The fast path and the general path decide identically (issue 11, item 1).

Each middleware is built three times over the same policy and clock: as it is (the
default header identity takes the fast path), with the fast path switched off (the
internal ``_lean`` set to None: every request builds a RequestView), and with an
``identify`` callable equivalent to the default (a custom callable: the general path,
as a user would get it). Hypothesis sends the same arbitrary header bytes, peers and
bodies to all three, in the same order, and every answer must match: status, header
fields (as a multiset: their order carries no meaning), body, the Identity the gate was
asked about, and what ``on_refusal`` was told. Refusals and admissions both happen
(the policy is small), under several trust set-ups.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srtm import Identity, TrafficPolicy
from srtm.identity import identify_by_headers
from srtm.middleware import ASGITrafficManager, WSGITrafficManager
from tests.middleware.test_fuzz import SECRET, requests

if TYPE_CHECKING:
    from srtm.gate import Decision
    from srtm.identity import RequestView

POLICY = TrafficPolicy(capacity=4, threshold=0.5, allocations={"u1": 1, "u2": 1})
STRICT = TrafficPolicy(
    capacity=4, threshold=0.5, allocations={"u1": 1, "u2": 1}, unknown_users="refuse"
)
#: Trust and policy set-ups the paths must agree under.
SETUPS: dict[str, dict[str, Any]] = {
    "secret": {"policy": POLICY, "front_end_secret": SECRET},
    "peers and secret": {
        "policy": POLICY,
        "trusted_peers": ["10.0.0.0/8", "unix:"],
        "front_end_secret": SECRET,
    },
    "unknown users refused": {"policy": STRICT, "trusted_peers": ["*"]},
}
# Requests as a front end sends them, half the time, so refusals (and so 429 against
# 503, from the version) come up as often as the fuzz's 401s.
plausible = st.builds(
    lambda user, version, chunks: (
        [
            (b"x-service-user-id", user),
            (b"x-duis-version", version),
            (b"x-srtm-front-end-secret", SECRET.encode()),
            (b"content-length", str(sum(map(len, chunks))).encode()),
        ],
        chunks,
        "/sr",
        "1.1",
    ),
    st.sampled_from([b"u1", b"u2", b"u3"]),
    st.sampled_from([b"4.1", b"3.2", b" 4.1 "]),
    st.lists(st.binary(max_size=20), max_size=2),
)
any_request = st.one_of(requests(), plausible)
peers = st.sampled_from(["10.0.0.7", "10.1.2.3", "192.168.1.1", "::ffff:10.0.0.7", "fe80::1%2"])
clients = st.one_of(st.just("10.0.0.7"), st.none(), peers)  # mostly trusted peers


def equivalent_identify() -> Any:
    """A custom identify callable that decides as the default does: the general path."""
    default = identify_by_headers()

    def identify(request: RequestView) -> Identity | None:
        return default(request)

    return identify


def clock() -> Any:
    """10 ms per reading: windows turn over during a run (each app has its own)."""
    counter = itertools.count()
    return lambda: 1000.0 + 0.01 * next(counter)


class Seen:
    """What one middleware did with one request: its answer, whom it counted, refusals."""

    def __init__(self) -> None:
        self.identities: list[Identity] = []
        self.refusals: list[tuple[Any, ...]] = []

    def on_refusal(self, request: RequestView, decision: Decision) -> None:
        headers = dict(request.headers)
        self.refusals.append((request.method, request.path, request.peer, headers, decision.status))


def record_identities(app: Any, seen: Seen) -> None:
    """Note the Identity of every decision, then let the real gate decide: through
    ``decide``, and the ASGI middleware's ``decide_now`` (an in-memory decision without
    a coroutine), which it calls first."""
    gate = app.gate
    decide = gate.decide

    def recording(identity: Identity, n: int = 1, **kw: Any) -> Any:
        seen.identities.append(identity)
        return decide(identity, n, **kw)

    gate.decide = recording
    decide_now = getattr(app, "_decide_now", None)
    if decide_now is not None:

        def recording_now(identity: Identity) -> Any:
            decision = decide_now(identity)
            if decision is not None:  # None: the middleware awaits decide instead
                seen.identities.append(identity)
            return decision

        app._decide_now = recording_now


async def inner_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": scope["srtm.user"].encode()})


def inner_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("X-App", "1")])
    return [environ["srtm.user"].encode()]


def three(build: Any, setup: dict[str, Any]) -> list[tuple[Any, Seen]]:
    """The fast path, the general path forced, and a custom identify: each with a Seen."""
    apps = []
    for variant in ("fast", "forced", "custom"):
        seen = Seen()
        kw = dict(setup)
        if variant == "custom":
            kw["identify"] = equivalent_identify()
        app = build(kw, seen)
        if variant == "fast":
            assert app._lean is not None
        elif variant == "forced":
            app._lean = None
        else:
            assert app._lean is None
        record_identities(app, seen)
        apps.append((app, seen))
    return apps


@pytest.mark.parametrize("name", SETUPS)
def test_asgi_fast_and_general_paths_decide_alike(name: str) -> None:
    def build(kw: dict[str, Any], seen: Seen) -> ASGITrafficManager:
        return ASGITrafficManager(
            inner_asgi, clock=clock(), background=False, on_refusal=seen.on_refusal, **kw
        )

    apps = three(build, SETUPS[name])
    loop = asyncio.new_event_loop()
    statuses: Counter[int] = Counter()

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(any_request, clients)
    def check(
        request: tuple[list[tuple[bytes, bytes]], list[bytes], str, str], client: str | None
    ) -> None:
        headers, chunks, path, version = request
        answers = []
        for app, seen in apps:
            queue = iter(
                [
                    {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                    for i, c in enumerate(chunks or [b""])
                ]
            )

            async def receive(queue: Any = queue) -> dict[str, Any]:
                return next(queue, {"type": "http.disconnect"})

            sent: list[dict[str, Any]] = []

            async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
                sent.append(message)

            scope = {
                "type": "http",
                "http_version": version,
                "method": "POST",
                "path": path,
                "headers": list(headers),
                "client": None if client is None else (client, 5000),
            }
            loop.run_until_complete(app(scope, receive, send))
            loop.run_until_complete(app.gate.tick())
            start, body = sent
            answers.append(
                (
                    start["status"],
                    Counter(start["headers"]),
                    body["body"],
                    seen.identities[-1:],
                    seen.refusals[-1:],
                )
            )
            seen.identities.clear()
            seen.refusals.clear()
        assert answers[0] == answers[1] == answers[2]
        statuses[answers[0][0]] += 1

    try:
        check()
    finally:
        for app, _ in apps:
            loop.run_until_complete(app.aclose())
        loop.close()
    assert {200, 401} <= set(statuses), statuses  # both admissions and refusals compared
    assert set(statuses) & {403, 429, 503}, statuses


@pytest.mark.parametrize("name", SETUPS)
def test_wsgi_fast_and_general_paths_decide_alike(name: str) -> None:
    def build(kw: dict[str, Any], seen: Seen) -> WSGITrafficManager:
        return WSGITrafficManager(
            inner_wsgi, clock=clock(), background=False, on_refusal=seen.on_refusal, **kw
        )

    apps = three(build, SETUPS[name])
    statuses: Counter[int] = Counter()

    @settings(max_examples=250, deadline=None)
    @given(any_request, clients)
    def check(
        request: tuple[list[tuple[bytes, bytes]], list[bytes], str, str], client: str | None
    ) -> None:
        headers, chunks, _, _ = request
        environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "PATH_INFO": "/sr"}
        if client is not None:
            environ["REMOTE_ADDR"] = client
        for raw_name, raw_value in headers:
            # What a WSGI server does: latin-1 text under HTTP_ and the upper-cased name,
            # repeated fields joined.
            key = raw_name.decode("latin-1").upper().replace("-", "_")
            key = key if key in ("CONTENT_LENGTH", "CONTENT_TYPE") else "HTTP_" + key
            value = raw_value.decode("latin-1")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        answers = []
        for app, seen in apps:
            mine = {**environ, "wsgi.input": io.BytesIO(b"".join(chunks))}
            started: list[tuple[str, list[tuple[str, str]]]] = []

            def start_response(
                status: str,
                fields: list[tuple[str, str]],
                exc_info: Any = None,
                started: list[tuple[str, list[tuple[str, str]]]] = started,
            ) -> Any:
                started.append((status, fields))
                return lambda data: None

            body = b"".join(app(mine, start_response))
            app.gate.tick()
            (status, fields), *_ = started
            answers.append(
                (status, Counter(fields), body, seen.identities[-1:], seen.refusals[-1:])
            )
            seen.identities.clear()
            seen.refusals.clear()
        assert answers[0] == answers[1] == answers[2]
        statuses[int(answers[0][0].split()[0])] += 1

    try:
        check()
    finally:
        for app, _ in apps:
            app.close()
    assert {200, 401} <= set(statuses), statuses
    assert set(statuses) & {403, 429, 503}, statuses


def test_a_custom_identify_or_pool_of_takes_the_general_path() -> None:
    policy = TrafficPolicy(capacity=10)
    assert ASGITrafficManager(inner_asgi, policy, background=False)._lean is not None
    named = identify_by_headers("X-Member", "X-Version")
    assert WSGITrafficManager(inner_wsgi, policy, identify=named, background=False)._lean
    custom = equivalent_identify()
    assert ASGITrafficManager(inner_asgi, policy, identify=custom, background=False)._lean is None
    pools = {"a": policy, "b": policy}
    app = WSGITrafficManager(inner_wsgi, pools, pool_of=lambda r: "a", background=False)
    assert app._lean is None
    # names that collide cannot be told apart in one scan: the general path reads them
    same = identify_by_headers("X-Same", "x-same")
    assert ASGITrafficManager(inner_asgi, policy, identify=same, background=False)._lean is None


def test_prebuilt_answers_are_the_ones_a_decision_would_build() -> None:
    """Refusals and RateLimit fields from the caches equal those built afresh, and a
    flood of one User's refusals in one second is answered by one prebuilt answer."""
    from srtm.middleware._common import Answer, refusal

    ticks = clock()
    app = WSGITrafficManager(inner_wsgi, POLICY, clock=ticks, background=False)
    front = app._front
    gate = app.gate
    refused: list[Answer] = []
    for i in range(400):
        user = ("u1", "u2", "u3")[i % 3]
        decision = gate.decide(Identity(user, ("4.1", "3.2")[i % 2]))
        if i % 10 == 0:
            gate.tick()
        policy, state = decision.rate_limit_headers()
        assert front.text_fields(decision) == (policy, state)
        raw = tuple((name.lower().encode(), value.encode()) for name, value in (policy, state))
        assert front.raw_fields(decision) == raw
        if not decision.allowed:
            answer = front.refusal(decision)
            fresh = Answer.of(refusal(decision))
            assert (answer.status, answer.headers, answer.body) == (
                fresh.status,
                fresh.headers,
                fresh.body,
            )
            assert answer.raw == fresh.raw
            assert answer.line == fresh.line
            refused.append(answer)
    assert len(refused) > 100
    assert len({id(a) for a in refused}) < len(refused) / 4  # reused, not rebuilt
    app.close()
