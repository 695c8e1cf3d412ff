"""Markdown tables for experiment reports (one helper instead of hand-built strings)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 2) -> str:
    """A GitHub-flavoured Markdown table; floats printed with ``digits`` decimals.

    >>> print(markdown_table(["arm", "acc"], [["baseline", 81.234], ["fgm", 82.0]]))
    | arm | acc |
    |---|---|
    | baseline | 81.23 |
    | fgm | 82.00 |
    """
    rows = [list(r) for r in rows]
    for r in rows:
        if len(r) != len(header):
            raise ValueError(f"row {r!r} has {len(r)} cells, header has {len(header)}")
    lines = ["| " + " | ".join(_cell(h, digits) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c, digits) for c in r) + " |" for r in rows]
    return "\n".join(lines)
