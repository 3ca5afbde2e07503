"""How the CLI prints: rich consoles that respect ``NO_COLOR`` and non-terminal output, tables
that fit the terminal, and ``--json`` for scripts.

On a terminal, tables have a header rule and colour, and shrink (wrapping cells) to the
terminal's width. Piped or redirected, output is plain: no colour, no box, no wrapping, a
header of upper-case column names, so ``grep`` and ``awk`` work on it. ``NO_COLOR`` (any
value) turns colour off on a terminal too; ``FORCE_COLOR`` turns it on when piped.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

PLAIN_WIDTH = 10_000  # piped output is never wrapped
CELL = 24  # the width a long cell is counted with when deciding which columns fit (it wraps)
STATE_STYLES = {
    "healthy": "green",
    "ok": "green",
    "ready": "green",
    "yes": "green",
    "success": "green",
    "degraded": "yellow",
    "busy": "yellow",
    "starting": "yellow",
    "ejected": "red",
    "down": "red",
    "misconfigured": "red",
    "unhealthy": "red",
    "failed": "red",
    "no": "red",
    "disabled": "dim",
}


def make_console(
    file: TextIO | None = None, *, env: Mapping[str, str] | None = None, stderr: bool = False
) -> Console:
    """A console on ``file`` (stdout, or stderr with ``stderr``)."""
    env = os.environ if env is None else env
    stream = file if file is not None else (sys.stderr if stderr else sys.stdout)
    tty = _isatty(stream)
    force = bool(env.get("FORCE_COLOR")) and not env.get("NO_COLOR")
    terminal = tty or force
    return Console(
        file=stream,
        force_terminal=terminal,
        no_color=bool(env.get("NO_COLOR")) or not terminal,
        color_system="auto" if terminal else None,
        highlight=False,
        emoji=False,
        width=None if tty else PLAIN_WIDTH,
        soft_wrap=not tty,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 or value == int(value) else f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value) or "-"
    return str(value)


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    console: Console,
    *,
    title: str | None = None,
    numeric: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> Table:
    """A table of ``rows``: boxed and coloured on a terminal, plain columns when piped. On a
    terminal too narrow for every column, the ``optional`` ones go first (in that order); what
    is left wraps inside its cells."""
    fancy = console.is_terminal
    columns, rows = fit(columns, rows, console.width if fancy else PLAIN_WIDTH, optional)
    out = Table(
        title=title if fancy else None,
        box=box.SIMPLE_HEAD if fancy else None,
        pad_edge=False,
        show_edge=False,
        header_style="bold" if fancy else "",
        expand=False,
        title_justify="left",
    )
    for i, name in enumerate(columns):
        out.add_column(
            name.upper(),
            justify="right" if name in numeric else "left",
            overflow="fold",
            no_wrap=not fancy or i == 0,  # the first column names the row: never folded
        )
    for row in rows:
        out.add_row(*(styled(v) for v in row))
    return out


def fit(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], width: int, optional: Sequence[str]
) -> tuple[list[str], list[list[Any]]]:
    """The columns that fit in ``width`` (dropping ``optional`` ones in order), and the rows cut
    to them. A column counts as wide as its header and its cells, up to ``CELL`` characters."""
    keep = list(columns)
    for name in optional:  # an optional column with nothing in it says nothing
        i = columns.index(name) if name in columns else -1
        if i >= 0 and rows and all(row[i] is None or row[i] == [] for row in rows) and width < PLAIN_WIDTH:
            keep.remove(name)

    def needed() -> int:
        widths = [
            max([len(name), *(min(len(cell(row[columns.index(name)])), CELL) for row in rows)])
            for name in keep
        ]
        return sum(widths) + 2 * (len(widths) - 1)

    for name in optional:
        if needed() <= width:
            break
        if name in keep and len(keep) > 1:
            keep.remove(name)
    index = [columns.index(name) for name in keep]
    return keep, [[row[i] for i in index] for row in rows]


def styled(value: Any) -> Text:
    text = cell(value)
    return Text(text, style=STATE_STYLES.get(text.lower(), ""))


def print_json(data: Any, file: IO[str] | None = None, *, line: bool = False) -> None:
    """JSON for scripts, never through rich (no markup, no wrapping). ``line``: one compact
    line (NDJSON), for commands that print a stream of objects."""
    stream = file if file is not None else sys.stdout
    stream.write(json.dumps(data, default=str, indent=None if line else 2) + "\n")
    stream.flush()


def show(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    numeric: Sequence[str] = (),
    console: Console | None = None,
    empty: str | None = None,
    optional: Sequence[str] = (),
) -> None:
    """Print a table on stdout (or ``console``); ``empty`` instead when there are no rows."""
    out = console or make_console()
    if not rows and empty is not None:
        out.print(empty)
        return
    out.print(table(columns, rows, out, title=title, numeric=numeric, optional=optional))
