"""README.md and docs/recipes.md quote the examples as they are, not from memory.

A code block whose paragraph links a file in examples/ must be a contiguous run of that
file's lines (dedented as a whole): edit an example and the docs must follow.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.examples.conftest import EXAMPLES, ROOT

if TYPE_CHECKING:
    from pathlib import Path

FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
LINKED = re.compile(r"examples/([\w/.-]+\.(?:py|sh))")


def quotes(doc: Path) -> list[tuple[str, str]]:
    """(example path, block) for each code block whose preceding paragraph names a file."""
    text = doc.read_text()
    found = []
    for match in FENCE.finditer(text):
        language, block = match.groups()
        if language == "console":
            continue  # commands and their output, not code
        before = text[: match.start()].rstrip("\n")
        paragraph = before[before.rfind("\n\n") + 2 :]
        named = LINKED.findall(paragraph)
        if named:
            found.append((named[-1], block))
    return found


def is_excerpt(block: str, source: str) -> bool:
    """Whether ``block`` is a run of ``source``'s lines, all shifted by one indent."""
    quote = block.rstrip("\n").split("\n")
    lines = source.split("\n")
    for i, line in enumerate(lines):
        if not line.endswith(quote[0]):
            continue
        indent = line[: len(line) - len(quote[0])]
        if indent.strip():
            continue
        run = lines[i : i + len(quote)]
        if len(run) == len(quote) and all(
            got == indent + want if want else not got.strip()
            for got, want in zip(run, quote, strict=True)
        ):
            return True
    return False


@pytest.mark.parametrize(
    ("doc", "at_least"),
    [("README.md", 3), ("docs/recipes.md", 9)],
)
def test_quoted_blocks_are_copies_of_the_examples(doc: str, at_least: int) -> None:
    found = quotes(ROOT / doc)
    assert len(found) >= at_least, found  # the quotes are there to be checked
    for name, block in found:
        source = (EXAMPLES / name).read_text()
        assert is_excerpt(block, source), f"{doc}: this block is not in examples/{name}:\n{block}"


def test_the_excerpt_check_can_fail() -> None:
    source = "def f():\n    x = 1\n\n    return x\n"
    assert is_excerpt("x = 1\n\nreturn x\n", source)
    assert not is_excerpt("x = 2\n", source)
    assert not is_excerpt("x = 1\nreturn x\n", source)  # a line left out
