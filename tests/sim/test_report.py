"""The per-User table printed whole: never cut to ``4.0…`` when piped or at 80 columns."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from rich.console import Console

from srtm.sim import Result
from srtm.sim._report import table_rows

Get = Callable[..., Result]


def printed(result: Result, *, width: int, terminal: bool) -> list[list[str]]:
    """The rows of the per-User table(s) as printed: the cells of each line drawn with │."""
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=terminal, color_system=None)
    result.print(console)
    text = buf.getvalue()
    # The totals table follows the per-User one(s) and its rows are drawn with │ too.
    users_part = text.split("* well-behaved Users only")[0]
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in users_part.splitlines()
        if line.startswith("│")
    ]


@pytest.mark.parametrize("width", [80, 60])
def test_piped_output_has_the_whole_table_on_one_line_per_user(reduced: Get, width: int) -> None:
    result = reduced("denial-of-service")
    _, rows = table_rows(result, compact=True)
    assert printed(result, width=width, terminal=False) == rows


def test_a_narrow_terminal_gets_the_two_sides_one_above_the_other(reduced: Get) -> None:
    result = reduced("denial-of-service")
    _, rows = table_rows(result, compact=True)
    lines = printed(result, width=80, terminal=True)
    tm_side = [row[:6] for row in rows]
    fcfs_side = [[row[0], *row[6:]] for row in rows]
    assert lines == tm_side + fcfs_side


def test_a_wide_terminal_gets_one_table(reduced: Get) -> None:
    result = reduced("denial-of-service")
    _, rows = table_rows(result, compact=True)
    assert printed(result, width=160, terminal=True) == rows
