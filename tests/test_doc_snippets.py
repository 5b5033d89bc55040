"""Every code block in the docs runs, parses or is output: none is quoted from memory.

Each fenced block of a page in ``PAGES`` must name its language, and each language has
one check:

- ``python``: run in a subprocess of its own (a fresh namespace), or, on a page marked
  ``<!-- snippet: session -->``, all of that page's Python blocks in one subprocess, in
  order, the way the page reads. A block marked ``<!-- snippet: file NAME -->`` is also
  written to ``NAME`` in the run's folder, so a later block can import it. A traceback
  names the page and the line of the doc.
- ``sh`` / ``console``: every ``srtm ...`` command shown (``$ `` lines in a console
  block) must parse with the real ``srtm`` parser, a ``pip install`` names extras srtm
  has, ``python -m M`` and ``python F.py`` name a module and a file that exist; nothing
  is run. A block marked ``<!-- snippet: run -->`` is run by bash from the repository
  root, with ``python3 -m timeit`` told to time one loop (its figures are not checked).
- ``json``: must parse.
- ``text``: output or a capture (some are compared with the real thing, below).

A block that cannot run by itself carries ``<!-- snippet: not-run (why) -->`` right
before it, and the reason is counted and printed. A block that only includes files
(``--8<-- "examples/x.py"``) is not run here: ``mkdocs build --strict``
(tests/test_docs.py) fails on a missing file, and the examples have their own tests.

Output a page shows is compared with what the code produces where a test can produce
it: mechanism.md's refusal, operations.md's ``srtm inspect`` run (redone on a private
Redis), demo.md's capture and verdict (the recorded run in docs/figures/), the snapshot
keys and the option tables of configuration.md, quoted error messages.

What the docs name but a test cannot reach is replaced in the text, openly, by
``SUBSTITUTIONS`` (the documented Redis is this session's private redis-server).
Inline code must name what exists: ``srtm.metrics.GatewayMetrics`` something importable,
``policy.collective_guarantee`` or ``Gate.snapshot`` an attribute of the real object,
and simulate.md's ``burst(start=, duration=, rate=)`` a callable of ``srtm.sim`` with
those parameters.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from srtm import Gate, Identity, TrafficPolicy
from tests.conftest import free_port

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent

# The pages whose blocks are checked. docs/trust.md joins by name.
PAGES = [
    "docs/index.md",
    "docs/mechanism.md",
    "docs/faults.md",
    "docs/configuration.md",
    "docs/operations.md",
    "docs/demo.md",
    "docs/simulate.md",
    "docs/benchmarks.md",
    "docs/scenarios/index.md",
    "docs/scenarios/normal-night.md",
    "docs/scenarios/runaway-user.md",
    "docs/scenarios/denial-of-service.md",
    "docs/scenarios/dsp-outage.md",
    "docs/scenarios/cold-snap.md",
    "docs/client.md",
]

LANGUAGES = {"python", "sh", "console", "json", "text"}
RUN_TIMEOUT = 240  # seconds for one page's Python: generous for a loaded 2-core machine

FENCE_OPEN = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
MARKER = re.compile(r"^<!-- snippet: (?P<kind>[\w-]+)(?: (?P<arg>.*?))? -->$")
INLINE_PATH = re.compile(r"`(srtm(?:\.[A-Za-z_]\w*)+)(?:\([^`]*\))?`")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page: where it starts, its language, text and marker."""

    page: str
    line: int  # 1-based line of the block's first content line
    language: str
    text: str
    marker: str | None = None  # the snippet marker right before it ("not-run", "file"...)
    marker_arg: str | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def includes(self) -> bool:
        """Whether the block only includes files (pymdownx.snippets' ``--8<--`` lines)."""
        lines = [line for line in self.text.splitlines() if line.strip()]
        return bool(lines) and all(line.startswith("--8<--") for line in lines)


class DocError(ValueError):
    """A page breaks the rules above (a fence without a language, a bare not-run...)."""


def blocks(page: str, text: str) -> list[Block]:
    """The fenced blocks of a page, each with the snippet marker just before it."""
    lines = text.split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opened = FENCE_OPEN.match(lines[i])
        if not opened:
            i += 1
            continue
        indent, fence = opened["indent"], opened["fence"]
        language = opened["info"].strip().split(" ")[0]
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise DocError(f"{page}:{i + 1}: a fence that never closes")
        body = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : end]) + "\n"
        if not language:
            raise DocError(f"{page}:{i + 1}: a fence without a language (one of {LANGUAGES})")
        if language not in LANGUAGES:
            raise DocError(f"{page}:{i + 1}: language {language!r} is not one of {LANGUAGES}")
        before = i - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        mark = MARKER.match(lines[before].strip()) if before >= 0 else None
        kind, arg = (mark["kind"], mark["arg"]) if mark else (None, None)
        if kind == "session":  # a page's marker, not this block's
            kind, arg = None, None
        if kind == "not-run" and not (arg and arg.strip("() ")):
            raise DocError(f"{page}:{i + 1}: a not-run marker must say why")
        if kind == "file" and not arg:
            raise DocError(f"{page}:{i + 1}: a file marker must name the file")
        if kind is not None and kind not in {"not-run", "file", "run"}:
            raise DocError(f"{page}:{i + 1}: unknown snippet marker {kind!r}")
        found.append(Block(page, i + 2, language, body, kind, arg))
        i = end + 1
    return found


def is_session(text: str) -> bool:
    """Whether the page asks for its Python blocks to run as one session."""
    return "<!-- snippet: session -->" in text


# Documented text -> what the test puts in its place, given this session's fixtures.
SUBSTITUTIONS: dict[str, Callable[[dict[str, str]], str]] = {
    "redis://gw-redis:6379": lambda fx: fx["redis_url"],
    "start_http_server(9464": lambda fx: f"start_http_server({fx['port']}",
}


def substitute(source: str, fixtures: dict[str, str]) -> str:
    """The block as the test runs it: documented hosts and ports made this machine's."""
    for documented, actual in SUBSTITUTIONS.items():
        if documented in source:
            source = source.replace(documented, actual(fixtures))
    return source


# Runs blocks given on stdin as JSON [[where, line, source, file or null], ...] in one
# namespace, each compiled against its doc line so a traceback points into the page. A
# block with a top-level ``await`` or ``async with`` runs as asyncio's REPL would run it.
DRIVER = textwrap.dedent(
    """
    import ast, asyncio, inspect, json, sys, traceback
    sys.path.insert(0, ".")
    namespace = {"__name__": "__main__"}
    for where, line, source, file in json.load(sys.stdin):
        if file:
            with open(file, "w") as out:
                out.write(source)
        try:
            code = compile(
                "\\n" * (line - 1) + source,
                where.split(":")[0],
                "exec",
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            )
            if code.co_flags & inspect.CO_COROUTINE:
                asyncio.run(eval(code, namespace))
            else:
                exec(code, namespace)
        except BaseException:
            print(f"block at {where} failed:", file=sys.stderr)
            traceback.print_exc()
            sys.exit(1)
    """
)


def run_python(batch: list[Block], fixtures: dict[str, str], cwd: Path) -> None:
    """Run ``batch`` in one fresh interpreter in ``cwd``; raise AssertionError if one fails."""
    payload = [
        [
            b.where,
            b.line,
            substitute(b.text, fixtures),
            b.marker_arg if b.marker == "file" else None,
        ]
        for b in batch
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=json.dumps(payload),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def shell_commands(block: Block) -> list[list[str]]:
    """The argument lists of the commands a sh or console block shows."""
    text = block.text.replace("\\\n", " ")
    lines = text.splitlines()
    if block.language == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    commands: list[list[str]] = []
    pending = ""
    for line in lines:
        try:  # a quoted argument may run over several lines
            words = shlex.split(pending + line, comments=True)
        except ValueError:
            pending += line + "\n"
            continue
        pending = ""
        command: list[str] = []
        for word in [*words, "&&"]:
            if word in {"&&", "||", ";", "|"}:
                if command:
                    commands.append(command)
                command = []
            else:
                command.append(word)
    assert not pending, f"{block.where}: a quote that never closes"
    return commands


def srtm_commands(block: Block) -> list[list[str]]:
    """The arguments of the ``srtm`` (or ``python -m srtm``) commands a block shows."""
    found = []
    for command in shell_commands(block):
        if command[:1] == ["srtm"]:
            found.append(command[1:])
        elif command[:3] in (["python3", "-m", "srtm"], ["python", "-m", "srtm"]):
            found.append(command[3:])
    return found


EXTRA = re.compile(r"^(?:srtm|\.)\[([\w,-]+)\]$")


def check_command(argv: list[str]) -> None:
    """A shown ``pip install`` names extras srtm has; ``python`` runs what exists here."""
    import tomllib

    if argv[:2] == ["pip", "install"] or argv[1:4] == ["-m", "pip", "install"]:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        extras = set(project["project"]["optional-dependencies"])
        for word in argv:
            named = EXTRA.match(word)
            if named:
                unknown = set(named[1].split(",")) - extras
                assert not unknown, f"{shlex.join(argv)}: srtm has no extra {unknown}"
    elif argv[0] in {"python", "python3"} and len(argv) > 1:
        if argv[1] == "-m":
            found = importlib.util.find_spec(argv[2])
            assert found is not None, f"{shlex.join(argv)}: no module {argv[2]}"
        elif argv[1].endswith(".py"):
            assert (ROOT / argv[1]).is_file(), f"{shlex.join(argv)}: no file {argv[1]}"


def parse_srtm(argv: list[str]) -> None:
    """Parse ``argv`` as ``srtm`` would; AssertionError naming it if it does not parse."""
    from srtm.cli import build_parser

    parser, _ = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exit_:
        if exit_.code != 0:
            raise AssertionError(f"srtm {shlex.join(argv)} does not parse") from exit_


def resolves(path: str) -> bool:
    """Whether a dotted ``srtm.x.y`` names a module, or an attribute of one."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def page_blocks(page: str) -> list[Block]:
    return blocks(page, (ROOT / page).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fixtures(redis_url: str) -> dict[str, str]:
    return {"redis_url": redis_url, "port": str(free_port())}


@pytest.mark.redis
@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run(page: str, fixtures: dict[str, str], tmp_path: Path) -> None:
    found = [
        b
        for b in page_blocks(page)
        if b.language == "python" and b.marker != "not-run" and not b.includes
    ]
    if not found:
        return
    if is_session((ROOT / page).read_text(encoding="utf-8")):
        run_python(found, fixtures, tmp_path)
    else:
        for block in found:
            run_python([block], fixtures, tmp_path)


@pytest.mark.parametrize("page", PAGES)
def test_shell_commands_parse_and_exist(page: str) -> None:
    for block in page_blocks(page):
        if block.language in {"sh", "console"}:
            for argv in srtm_commands(block):
                parse_srtm(argv)
            for argv in shell_commands(block):
                check_command(argv)


def run_shell(block: Block) -> None:
    """Run a sh block with bash from the repository root, timing one loop per timeit."""
    script = block.text.replace("python3 -m timeit", "python3 -m timeit -n 1 -r 1")
    result = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{block.where}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("page", PAGES)
def test_shell_blocks_marked_run_run(page: str) -> None:
    for block in page_blocks(page):
        if block.language == "sh" and block.marker == "run":
            run_shell(block)


@pytest.mark.parametrize("page", PAGES)
def test_json_blocks_parse(page: str) -> None:
    for block in page_blocks(page):
        if block.language == "json":
            json.loads(block.text)


@pytest.mark.parametrize("page", PAGES)
def test_inline_srtm_paths_exist(page: str) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    missing = [path for path in INLINE_PATH.findall(text) if not resolves(path)]
    assert not missing, f"{page} names what srtm does not have: {missing}"


def test_the_documented_refusal_is_the_gates() -> None:
    """mechanism.md shows a refusal's body and RateLimit fields: they are what a gate sends."""
    page = page_blocks("docs/mechanism.md")
    body = next(b for b in page if b.language == "json")
    fields = next(b for b in page if b.text.startswith("RateLimit-Policy:"))
    shown = json.loads(body.text)
    user = shown["user"]
    policy = TrafficPolicy(capacity=40, allocations={user: 10, "other": 10})
    gate = Gate(policy, clock=lambda: 0.0, background=False)
    for _ in range(40):  # twice its allocation, the whole capacity: TM engages
        gate.decide(Identity(user, "4.1"), now=0.1)
    gate.tick(now=1.0)
    refused = [
        d for _ in range(40) if not (d := gate.decide(Identity(user, "4.1"), now=1.1)).allowed
    ]
    assert refused, "the gate never throttled: the check would prove nothing"
    assert json.loads(refused[0].refusal_body()) == shown
    sent = "".join(f"{name}: {value}\n" for name, value in refused[0].rate_limit_headers())
    assert re.sub(r"\d+", "N", fields.text) == re.sub(r"\d+", "N", sent)


def console_session(block: Block) -> list[tuple[str, str]]:
    """(command, the output shown after it) for each ``$ `` line of a console block."""
    shown: list[tuple[str, str]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            shown.append((line[2:], ""))
        elif shown:
            shown[-1] = (shown[-1][0], shown[-1][1] + line + "\n")
    return shown


def store_second(url: str) -> float:
    """The Redis server's clock, which `srtm inspect` counts its windows by."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        reply: Any = client.time()  # redis-py types the sync and async replies as one
        seconds, micros = reply
    finally:
        client.close()
    return int(seconds) + int(micros) / 1e6


@pytest.mark.redis
def test_the_documented_inspect_output_is_what_srtm_inspect_prints(redis_db: str) -> None:
    """operations.md's recorded `srtm inspect` run, redone: two gates, one told 60 SR/s."""
    block = next(b for b in page_blocks("docs/operations.md") if "$ srtm inspect" in b.text)
    (table_cmd, table), (json_cmd, folded) = console_session(block)
    documented_uri = shlex.split(table_cmd)[2]
    shown = json.loads(folded)["pools"]["default"]
    # The run counts in 60 s windows on the store's clock; it takes well under a second,
    # so start it at least 5 s before a window ends to keep every count in "current".
    wait = 60 - store_second(redis_db) % 60
    if wait < 5:
        time.sleep(wait + 0.1)  # a clock boundary, not another thread: nothing to wait on
    gates = [
        Gate(TrafficPolicy(capacity=1350, window=60, storage=redis_db), background=False)
        for _ in range(2)
    ]
    try:
        gates[0].set_capacity(60)
        for gate in gates:
            gate.tick()  # heartbeat; the first node publishes its capacity
        for (user, figures), gate in zip(shown["windows"]["current"].items(), gates, strict=True):
            for _ in range(figures["offered"]):
                gate.decide(Identity(user, "4.1"))
        names = dict(zip(sorted(g.node for g in gates), shown["nodes"], strict=True))

        def srtm(command: str) -> str:
            argv = shlex.split(command.replace(documented_uri, redis_db))
            assert argv[0] == "srtm"
            got = subprocess.run(
                [sys.executable, "-m", "srtm", *argv[1:]],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
                check=True,
            ).stdout
            for node, documented in names.items():
                got = got.replace(node, documented)
            return got

        assert srtm(table_cmd) == table
        assert json.loads(srtm(json_cmd)) == json.loads(folded)
    finally:
        for gate in gates:
            gate.close()


def table_names(text: str, header: str) -> set[str]:
    """The `code` names in the first column of the table under ``header``."""
    rows = text.split(header + "\n", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return {m[1] for row in rows if (m := re.match(r"\| `(\w+)` \|", row))}


def test_configuration_tables_name_every_field_and_argument() -> None:
    """configuration.md's tables list TrafficPolicy's fields and the middlewares' options."""
    import dataclasses
    import inspect

    from srtm.middleware import ASGITrafficManager, WSGITrafficManager

    text = (ROOT / "docs/configuration.md").read_text(encoding="utf-8")
    fields = {f.name for f in dataclasses.fields(TrafficPolicy)}
    assert table_names(text, "| field | default | meaning |") == fields
    for manager in (ASGITrafficManager, WSGITrafficManager):
        options = {
            name
            for name, p in inspect.signature(manager).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        assert table_names(text, "| argument | default | meaning |") == options, manager


OBJECT_PATH = re.compile(
    r"`(policy|gate|manager|metrics|decision|TrafficPolicy|Gate|Governor|Decision)"
    r"((?:\.[A-Za-z_]\w*)+)"
)


def real_objects() -> dict[str, object]:
    """What the docs' inline ``policy.x``, ``gate.x``... refer to, built for real."""
    from srtm import Decision
    from srtm.governor import Governor
    from srtm.metrics import GatewayMetrics
    from srtm.middleware import ASGITrafficManager

    policy = TrafficPolicy(capacity=100, allocations={"a": 10})
    gate = Gate(policy, background=False)

    async def app(scope: object, receive: object, send: object) -> None: ...

    return {
        "policy": policy,
        "gate": gate,
        "manager": ASGITrafficManager(app, policy, background=False),
        "metrics": GatewayMetrics(gate),
        "decision": gate.decide(Identity("a", "4.1")),
        "TrafficPolicy": TrafficPolicy,
        "Gate": Gate,
        "Governor": Governor,
        "Decision": Decision,
    }


def missing_attributes(text: str, objects: dict[str, object]) -> list[str]:
    """The inline ``name.attr...`` paths of ``text`` that its object does not have."""
    missing = []
    for name, path in OBJECT_PATH.findall(text):
        obj = objects[name]
        for attr in path.strip(".").split("."):
            if not hasattr(obj, attr):
                missing.append(name + path)
                break
            obj = getattr(obj, attr)
    return missing


def test_inline_attributes_exist() -> None:
    """``policy.collective_guarantee``, ``Gate.snapshot``...: each names a real attribute."""
    objects = real_objects()
    assert missing_attributes("`gate.set_shadow(True)` and `policy.no_such`", objects) == [
        "policy.no_such"
    ]
    for page in PAGES:
        text = (ROOT / page).read_text(encoding="utf-8")
        assert not missing_attributes(text, objects), page


def test_demo_captures_are_the_recorded_run() -> None:
    """demo.md's live view and verdict are the run whose files are in docs/figures/."""
    from tests.examples.test_docs import is_excerpt

    view, verdict = (b for b in page_blocks("docs/demo.md") if b.language == "text")
    terminal = (ROOT / "docs/figures/demo-terminal.txt").read_text(encoding="utf-8")
    assert is_excerpt(view.text, terminal), view.where
    run = json.loads((ROOT / "docs/figures/demo.json").read_text(encoding="utf-8"))
    checks = [
        f"{'ok  ' if c['passed'] else 'FAIL'} {c['name']}: {c['detail']}\n" for c in run["checks"]
    ]
    assert verdict.text == "".join(checks) + "\n" + run["verdict_line"] + "\n", verdict.where


def listed(comment: str, label: str, end: str) -> set[str]:
    """The names listed after ``label`` up to ``end`` in a block's comments."""
    text = comment.split(label, 1)[1].split(end, 1)[0]
    text = re.sub(r"\([^)]*\)", "", text)
    return {name.strip() for name in re.split(r",| and ", text) if name.strip()}


def test_the_documented_snapshot_keys_are_the_gates() -> None:
    """configuration.md lists a snapshot's keys per pool and per User: exactly the real ones."""
    block = next(b for b in page_blocks("docs/configuration.md") if ".snapshot()" in b.text)
    comments = " ".join(
        line.split("#", 1)[1].strip() for line in block.text.splitlines() if "#" in line
    )
    gate = Gate(TrafficPolicy(capacity=100, allocations={"a": 10}), background=False)
    gate.decide(Identity("a", "4.1"))
    gate.tick()
    pool = gate.snapshot()["pools"]["default"]
    assert listed(comments, "Per pool:", ".") == set(pool)
    assert listed(comments, "Per User:", ";") == set(pool["users"]["a"])


# Pages whose inline calls (`daily(volume)`, `burst(start=, ...)`) name that module's API.
INLINE_CALLS = {"docs/simulate.md": "srtm.sim"}
INLINE_CALL = re.compile(r"`([A-Za-z_]\w*)\(([^`]*)\)")


def wrong_calls(text: str, module: str) -> list[str]:
    """Inline calls naming what ``module`` lacks, or parameters its callable does not take.

    Keyword arguments and bare lower-case names (the docs' placeholders, as in
    ``streams(curve, mix)``) must be the callable's parameter names.
    """
    import builtins
    import inspect

    api = importlib.import_module(module)
    wrong = []
    for name, args in INLINE_CALL.findall(text):
        if hasattr(builtins, name):
            continue  # min(offered, G): arithmetic in the prose
        target = getattr(api, name, None)
        if target is None:
            wrong.append(f"{name}: not in {module}")
            continue
        params = inspect.signature(target).parameters
        flat = re.sub(r"\[.*?\]|\(.*?\)", "", args)
        named = re.findall(r"(\w+)=", flat)
        bare = [a.strip() for a in flat.split(",") if re.fullmatch(r"[a-z_]\w*", a.strip())]
        wrong += [f"{name}({arg})" for arg in [*named, *bare] if arg not in params]
    return wrong


@pytest.mark.parametrize(("page", "module"), INLINE_CALLS.items())
def test_inline_calls_match_the_api(page: str, module: str) -> None:
    assert wrong_calls("`daily(volume)` and `burst(start=, rate=)`", module) == []
    assert wrong_calls("`daily(amount)` `no_such()` `burst(end=)`", module) == [
        "daily(amount)",
        "no_such: not in srtm.sim",
        "burst(end)",
    ]
    assert wrong_calls((ROOT / page).read_text(encoding="utf-8"), module) == []


def test_quoted_error_messages_are_the_real_ones() -> None:
    """Messages the docs quote word for word are what srtm says."""
    from srtm import PolicyError

    with pytest.raises(PolicyError) as policy_error:
        TrafficPolicy(capacity=0)
    demo = subprocess.run(
        [sys.executable, "-m", "srtm", "demo", "--out", "/no/such/run.png"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert demo.returncode == 2
    for page, said in [
        ("docs/configuration.md", str(policy_error.value)),
        ("docs/demo.md", demo.stderr.strip().splitlines()[-1]),
    ]:
        assert f"`{said}`" in (ROOT / page).read_text(encoding="utf-8"), (page, said)


def test_the_pages_have_blocks_to_check() -> None:
    """An extractor that found nothing would pass everything: count what it finds."""
    found = [b for page in PAGES for b in page_blocks(page)]
    languages = [b.language for b in found]
    assert languages.count("python") >= 8, languages
    assert languages.count("console") + languages.count("sh") >= 12, languages


def test_every_substitution_is_used() -> None:
    """A substitution whose documented text left the docs is stale: remove it."""
    text = "".join(b.text for page in PAGES for b in page_blocks(page))
    for documented in SUBSTITUTIONS:
        assert documented in text, documented


def test_not_run_blocks_are_few_and_say_why(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = [b for page in PAGES for b in page_blocks(page) if b.marker == "not-run"]
    with capsys.disabled():
        for block in skipped:
            print(f"\nnot run: {block.where} {block.marker_arg}")
    assert len(skipped) <= 2, [b.where for b in skipped]


# The checks themselves: each can fail.

PAGE = """\
# A page
<!-- snippet: session -->

```python
x = 40
```

Text between.

```python
assert x + 2 == 42
```

<!-- snippet: not-run (needs a live Redis cluster) -->

```python
connect_to_the_cluster()
```

```console
$ srtm simulate dsp-outage --scale 0.1
$ srtm inspect redis://h:6379 --json
```
"""


def test_extractor_finds_blocks_markers_and_lines() -> None:
    found = blocks("p.md", PAGE)
    assert [(b.language, b.line, b.marker) for b in found] == [
        ("python", 5, None),
        ("python", 11, None),
        ("python", 17, "not-run"),
        ("console", 21, None),
    ]
    assert found[2].marker_arg == "(needs a live Redis cluster)"
    assert not any(b.includes for b in found)
    included = blocks("p.md", '```python\n--8<-- "examples/traffic.py:policy"\n```\n')
    assert included[0].includes
    assert is_session(PAGE)
    assert srtm_commands(found[3]) == [
        ["simulate", "dsp-outage", "--scale", "0.1"],
        ["inspect", "redis://h:6379", "--json"],
    ]


@pytest.mark.parametrize(
    ("page", "complaint"),
    [
        ("```\nx = 1\n```\n", "without a language"),
        ("```pycon\n>>> 1\n```\n", "is not one of"),
        ("<!-- snippet: not-run -->\n```python\nx\n```\n", "must say why"),
        ("<!-- snippet: skip (lazy) -->\n```python\nx\n```\n", "unknown snippet marker"),
        ("```python\nx = 1\n", "never closes"),
    ],
)
def test_extractor_refuses_what_would_escape_the_checks(page: str, complaint: str) -> None:
    with pytest.raises(DocError, match=complaint):
        blocks("p.md", page)


def test_a_session_runs_in_one_namespace_and_a_broken_block_fails(tmp_path: Path) -> None:
    good = blocks("p.md", PAGE)[:2]
    run_python(good, {}, tmp_path)  # the second block sees the first's x
    with pytest.raises(AssertionError, match=r"p\.md:11 failed"):
        run_python(good[1:], {}, tmp_path)  # alone, x is not defined
    broken = blocks("p.md", "text\n\n```python\nimport srtm\nsrtm.no_such_thing()\n```\n")
    with pytest.raises(AssertionError, match=r"(?s)p\.md:4 failed.*no_such_thing"):
        run_python(broken, {}, tmp_path)


def test_a_block_may_await_at_top_level(tmp_path: Path) -> None:
    shown = (
        "import asyncio\n\nawait asyncio.sleep(0)\nasync with asyncio.timeout(5):\n    done = 1\n"
    )
    run_python([Block("p.md", 3, "python", shown)], {}, tmp_path)
    broken = shown.replace("asyncio.sleep(0)", "asyncio.no_such_sleep(0)")
    with pytest.raises(AssertionError, match="no_such_sleep"):
        run_python([Block("p.md", 3, "python", broken)], {}, tmp_path)


def test_a_wrong_command_or_path_fails() -> None:
    parse_srtm(["simulate", "--list"])
    with pytest.raises(AssertionError, match="does not parse"):
        parse_srtm(["inspect"])  # the URI is required
    with pytest.raises(AssertionError, match="does not parse"):
        parse_srtm(["simulate", "--no-such-option"])
    assert resolves("srtm.metrics.GatewayMetrics")
    assert resolves("srtm.Gate")
    assert not resolves("srtm.Gate.no_such_method")
    assert not resolves("srtm.no_such_module.thing")
    check_command(["pip", "install", "srtm[redis,demo]"])
    with pytest.raises(AssertionError, match="no extra"):
        check_command(["python3", "-m", "pip", "install", ".[redis,no-such-extra]"])
    check_command(["python", "-m", "srtm.sim", "--help"])
    with pytest.raises(AssertionError, match="no module"):
        check_command(["python", "-m", "srtm.no_such_module"])
    with pytest.raises(AssertionError, match="no file"):
        check_command(["python", "bench/no_such_bench.py", "--quick"])


def test_a_shell_block_that_fails_fails() -> None:
    shown = 'export PYTHONPATH=$PWD\npython3 -m timeit -s "\nimport srtm" "srtm.Gate"\n'
    run_shell(Block("p.md", 2, "sh", shown, "run"))
    broken = shown.replace("srtm.Gate", "srtm.NoSuchGate")
    with pytest.raises(AssertionError, match="NoSuchGate"):
        run_shell(Block("p.md", 2, "sh", broken, "run"))


def test_substitution_is_explicit() -> None:
    shown = 'TrafficPolicy(capacity=1, storage="redis://gw-redis:6379")'
    assert substitute(shown, {"redis_url": "redis://127.0.0.1:1234"}) == (
        'TrafficPolicy(capacity=1, storage="redis://127.0.0.1:1234")'
    )
