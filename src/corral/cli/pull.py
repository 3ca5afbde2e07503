"""``corral pull MODEL [--instance NAME ... | --all]``: pull a model onto Ollama instances,
with a progress bar per instance and a summary at the end.

It goes to the data plane's ``/api/pull`` (an Ollama API route), which streams each
instance's progress tagged with its name, then a summary line. On a terminal each instance
gets a rich progress bar (bytes, speed, time left); piped, a line per step; with ``--json``
the NDJSON lines as they come.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from corral.cli.client import AdminClient, CLIError
from corral.cli.output import make_console, print_json
from corral.cli.providers import client, client_options

STEPS = ("success", "verifying sha256 digest", "writing manifest")
PULL_TIMEOUT = 3600.0  # seconds without a byte before the pull is given up (a big model)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("pull", help="pull a model onto Ollama instances")
    parser.add_argument("model")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--instance", action="append", help="an instance to pull onto (repeatable)")
    where.add_argument(
        "--all", action="store_true", help="every Ollama instance corral manages (the default)"
    )
    client_options(parser, plane="data")  # /api/pull is an Ollama API route, served with the data plane
    return parser


def progress_bars(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.fields[instance]:<16}"),
        BarColumn(bar_width=None),
        TextColumn("{task.percentage:>5.1f}%"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        auto_refresh=False,
        expand=True,
    )


@dataclass
class Pull:
    """The state of one pull: a task per instance, the summary line."""

    console: Console
    bars: Progress | None
    quiet: bool = False  # --json: the lines are printed as they come, nothing else
    tasks: dict[str, TaskID] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def update(self, line: dict[str, Any]) -> None:
        name = line.get("instance")
        if name is None:
            self.summary = line
            return
        name = str(name)
        status = str(line.get("status") or self.status.get(name, "waiting"))
        total, completed = int(line.get("total") or 0), int(line.get("completed") or 0)
        changed = status != self.status.get(name)
        self.status[name] = status
        if self.bars is None:
            if changed and (status in STEPS or not total) and not self.quiet:
                self.console.print(f"{escape(name):<16} {escape(status)}")
            return
        task = self.tasks.get(name)
        if task is None:
            task = self.tasks[name] = self.bars.add_task("", instance=name, status=status, total=None)
        fields: dict[str, Any] = {"status": status}
        if total:
            fields.update(total=total, completed=min(completed, total))
        if status == "success":
            done = self.bars.tasks[self.tasks[name]].total
            fields["completed"] = done if done else 0
        self.bars.update(task, **fields)
        self.bars.refresh()


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    return pull(client(args), args, console)


def pull(api: AdminClient, args: argparse.Namespace, console: Console | None = None) -> int:
    out = console or make_console()
    query = "?instance=" + quote(",".join(args.instance)) if args.instance else ""
    bars = progress_bars(out) if out.is_terminal and not args.json else None
    state = Pull(out, bars, quiet=args.json)
    try:
        if bars is not None:
            bars.start()
        with api.stream("POST", "/api/pull" + query, {"model": args.model}, timeout=PULL_TIMEOUT) as resp:
            for raw in resp.iter_lines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                if args.json:
                    print_json(line, out.file, line=True)
                state.update(line)
    except json.JSONDecodeError:
        raise CLIError("The gateway's /api/pull answered something that is not NDJSON.") from None
    finally:
        if bars is not None:
            bars.stop()
    if args.json:
        return 1 if _failures(state.summary) or not state.summary else 0
    return finish(args.model, state, out)


def finish(model: str, state: Pull, out: Console) -> int:
    failed = _failures(state.summary)
    ok = [n for n in state.summary.get("instances", state.status) if n not in failed]
    names = f": {', '.join(ok)}" if ok else ""
    colour = "green" if ok and not failed else ("yellow" if ok else "red")
    out.print()
    where = f"{len(ok)} of {len(ok) + len(failed)} instance(s){names}"
    out.print(f"[{colour}]{escape(model)}: pulled on {escape(where)}[/]")
    for name, why in failed.items():
        out.print(f"  [red]{escape(name)}[/red]: {escape(why)}")
    return 1 if failed or not state.summary else 0


def _failures(summary: dict[str, Any]) -> dict[str, str]:
    error = summary.get("error")
    if not isinstance(error, str):
        return {}
    out = {}
    for part in error.removeprefix("pull failed on ").split("; "):
        name, _, why = part.partition(": ")
        out[name] = why
    return out
