"""``corral import litellm FILE [-o corral.yaml]``: convert a LiteLLM proxy config.

Without ``-o`` the new config goes to standard output and the report to standard error (so
``corral import litellm config.yaml > corral.yaml`` works); with ``-o`` the file is written
(refused if it exists, unless ``--force``) and the report printed. ``--json`` prints the
config and the report as one JSON object. The exit status is non-zero only when the source
cannot be read (2), or, never expected, when the result does not validate (1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from corral.cli.client import CLIError
from corral.cli.output import make_console, print_json
from corral.migrate import Conversion, UnreadableSource, convert_litellm
from corral.migrate.report import KINDS, TITLES

KIND_STYLES = {"unmapped": "red", "changed": "yellow", "choice": "cyan", "mapped": "green"}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("import", help="convert another gateway's config into a corral config")
    sources = parser.add_subparsers(dest="source", required=True)
    litellm = sources.add_parser(
        "litellm",
        help="convert a LiteLLM proxy config.yaml",
        description="Convert a LiteLLM proxy config (model_list, litellm_settings, router_settings, "
        "general_settings) into a corral config, and report what was mapped, what changed and what "
        "could not be mapped, with the source line of each.",
    )
    litellm.add_argument("file", help="the LiteLLM config.yaml")
    litellm.add_argument("-o", "--output", help="write the corral config here (default: standard output)")
    litellm.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    litellm.add_argument("--json", action="store_true", help="print the config and the report as JSON")
    litellm.add_argument("--quiet", action="store_true", help="print only what was not mapped or changed")


class Unreadable(CLIError):
    """The source cannot be read: exit status 2."""


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Unreadable(f"{path}: file not found.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Unreadable(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc}).") from None
    try:
        conversion = convert_litellm(text, str(path))
    except UnreadableSource as exc:
        raise Unreadable(str(exc)) from None
    if args.output:
        target = Path(args.output)
        if target.exists() and not args.force:
            raise CLIError(f"{target} exists; pass --force to overwrite it, or choose another -o.")
        target.write_text(conversion.yaml_text(), encoding="utf-8")
    if args.json:
        print_json(
            {
                "output": args.output,
                "summary": conversion.summary,
                "valid": conversion.problem is None,
                "problem": conversion.problem,
                "env": sorted(conversion.env_refs),
                "config": conversion.config,
                "report": conversion.report.as_json(),
            },
            stdout,
        )
    else:
        if not args.output:
            stdout.write(conversion.yaml_text())
            stdout.flush()
        console = make_console(stdout if args.output else stderr)
        render_report(conversion, console, output=args.output, quiet=args.quiet)
    if conversion.problem is not None:
        stderr.write(
            f"corral: the converted config does not validate (please report this): {conversion.problem}\n"
        )
        return 1
    return 0


def render_report(
    conversion: Conversion, console: Console, *, output: str | None, quiet: bool = False
) -> None:
    summary = conversion.summary
    where = output or "standard output"
    console.print(
        Text.assemble(
            ("Converted ", ""),
            (conversion.source, "bold"),
            (f" -> {where}: {summary['providers']} provider(s), {summary['aliases']} alias(es), ", ""),
            (f"{summary['prices']} price(s).", ""),
        )
    )
    counts = conversion.report.counts()
    for kind in KINDS:
        entries = conversion.report.of(kind)
        if not entries or (quiet and kind in ("mapped",)):
            continue
        console.print()
        console.print(Text(f"{TITLES[kind]} ({counts[kind]})", style=f"bold {KIND_STYLES[kind]}"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(justify="right", style="dim", no_wrap=True)
        grid.add_column()
        for e in entries:
            grid.add_row(
                f"line {e.line}" if e.line else "-", Text.assemble((e.where, "bold"), ": ", e.message)
            )
        console.print(Padding(grid, (0, 0, 0, 2)))
    if conversion.env_refs:
        console.print()
        names = ", ".join(sorted(conversion.env_refs))
        console.print(f"Before `corral serve`, export: {names}.")
    if output and conversion.problem is None:
        console.print(f"Check it with: corral check --config {output}")
