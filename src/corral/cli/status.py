"""``corral status [--watch]``: every deployment's state, from a running gateway's /admin/health.

Once, it prints the fleet table. With ``--watch`` it redraws the table in place every
``--interval`` seconds (a live view on a terminal; a new table each time when piped; one JSON
object per refresh with ``--json``) until interrupted, or ``--count`` refreshes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from corral.cli.client import AdminClient
from corral.cli.output import make_console, print_json, table

COLUMNS = (
    "name",
    "type",
    "state",
    "in_flight",
    "max_parallel",
    "latency_ms",
    "loaded_models",
    "last_check",
    "last_error",
)
NUMERIC = ("in_flight", "max_parallel", "latency_ms")
OPTIONAL = (
    "last_check",
    "max_parallel",
    "type",
    "latency_ms",
    "last_error",
    "loaded_models",
)  # narrow terminals


def add_parser(sub: Any) -> None:
    from corral.cli.main import _client_options

    parser = sub.add_parser("status", help="every deployment's health, once or live (--watch)")
    parser.add_argument("--watch", action="store_true", help="refresh in place until interrupted")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default 2)")
    parser.add_argument("--count", type=int, default=0, help="with --watch: stop after this many refreshes")
    _client_options(parser)


def rows(data: dict[str, Any]) -> list[list[Any]]:
    out = []
    for d in data["deployments"]:
        checked = (d.get("last_check") or "")[11:19] or None
        error = d.get("last_error") if d.get("state") != "healthy" else None
        out.append(
            [
                d["name"],
                d["type"],
                d["state"],
                d["in_flight"],
                d["max_parallel"],
                d["latency_ms"],
                d["loaded_models"],
                checked,
                error or None,
            ]
        )
    return out


def render(data: dict[str, Any], console: Console, *, at: str | None = None) -> Table:
    healthy = sum(1 for d in data["deployments"] if d.get("state") == "healthy")
    title = f"corral fleet: {healthy} of {len(data['deployments'])} healthy" + (f"  ({at})" if at else "")
    return table(COLUMNS, rows(data), console, title=title, numeric=NUMERIC, optional=OPTIONAL)


def run(
    args: argparse.Namespace, console: Console | None = None, sleep: Callable[[float], None] = time.sleep
) -> int:
    from corral.cli.main import _client

    client = _client(args)
    out = console or make_console()
    if not args.watch:
        data = client.get("/admin/health")
        if args.json:
            print_json(data, out.file)
        else:
            out.print(render(data, out))
        return 0
    return watch(client, args, out, sleep)


def watch(client: AdminClient, args: argparse.Namespace, out: Console, sleep: Callable[[float], None]) -> int:
    done = 0
    live = (
        Live(console=out, auto_refresh=False, transient=False) if out.is_terminal and not args.json else None
    )
    try:
        if live is not None:
            live.start()
        while not args.count or done < args.count:
            data = client.get("/admin/health")
            done += 1
            stamp = time.strftime("%H:%M:%S")
            if args.json:
                print_json(data, out.file, line=True)
            elif live is not None:
                hint = Text("Ctrl-C to stop", style="dim")
                live.update(Group(render(data, out, at=stamp), hint), refresh=True)
            else:
                out.print(render(data, out, at=stamp))
                out.print()
            if args.count and done >= args.count:
                break
            sleep(max(0.1, args.interval))
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()
    return 0
