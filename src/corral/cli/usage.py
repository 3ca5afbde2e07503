"""``corral usage``: a summary table; ``corral usage tail``: requests as they finish, as a live
view; ``corral usage compare``: providers side by side. All read a running gateway's
/admin/usage. ``--top N`` keeps the N groups with the highest cost (``--top-by requests``: the
most requests) and sums the rest in one "other (M more)" row, so the rows still add up.

``tail`` on a terminal keeps a live table of the newest requests (with a running count, tokens
and cost) redrawn in place; piped, it prints one row per request as it finishes; with
``--json`` one JSON object per request. It stops on Ctrl-C or after ``--follow-seconds``.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from corral.cli.client import AdminClient
from corral.cli.output import make_console, print_json, show, table
from corral.cli.providers import client, client_options

SUMMARY = ("requests", "total_tokens", "cost_usd", "errors", "latency_p50_ms", "latency_p95_ms")
TAIL = ("at", "key_id", "requested_model", "provider", "status", "total_tokens", "cost_usd", "latency_ms")
NUMERIC = ("requests", "total_tokens", "cost_usd", "errors", "latency_p50_ms", "latency_p95_ms", "latency_ms")
SHOWN = 20  # rows the live view keeps
SPARE = ("key_id", "cost_usd", "total_tokens")  # left out first on a narrow terminal
POLL = 1.0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("usage", help="usage: summary, tail (live), compare")
    client_options(parser)
    parser.add_argument("view", nargs="?", default="summary", choices=["summary", "tail", "compare"])
    parser.add_argument("--last", default="24h", help="window: 15m, 1h, 7d (default 24h)")
    parser.add_argument(
        "--group-by", default="model", help="provider, model, key, user, surface, hour, day (comma-separated)"
    )
    parser.add_argument(
        "--top", type=int, help="only the N first groups (1-100), the rest summed as 'other'; one dimension"
    )
    parser.add_argument(
        "--top-by", dest="top_by", choices=["cost", "requests"], help="rank --top by (default cost)"
    )
    parser.add_argument("--key-id", dest="key_id", help="only this gateway key id")
    for name in ("user", "model", "provider", "surface"):
        parser.add_argument(f"--{name}", help=f"only this {name}")
    parser.add_argument(
        "--follow-seconds",
        type=float,
        default=0.0,
        help="tail: stop after this many seconds (default: until interrupted)",
    )
    return parser


def _params(args: argparse.Namespace, **extra: str) -> str:
    params = {"last": args.last, **extra}
    filters = {"key": args.key_id, "user": args.user, "model": args.model, "provider": args.provider,
               "surface": args.surface}  # fmt: skip
    params.update({k: v for k, v in filters.items() if v})
    return urlencode(params)


def run(args: argparse.Namespace) -> int:
    return show_usage(client(args), args)


def show_usage(api: AdminClient, args: argparse.Namespace, console: Console | None = None) -> int:
    out = console or make_console()
    if args.view == "tail":
        return tail(api, args, out)
    if args.view == "compare":
        data = api.get("/admin/usage/compare?" + _params(args))
        columns: tuple[str, ...] = ("provider", *SUMMARY)
    else:
        top = {"top": str(args.top)} if args.top is not None else {}
        if args.top_by:
            top["top_by"] = args.top_by
        data = api.get("/admin/usage?" + _params(args, group_by=args.group_by, **top))
        grouped = [g.strip() for g in args.group_by.split(",") if g.strip()]
        columns = (*grouped, *SUMMARY)
        for row in data["data"]:
            if row.get("other"):  # the groups past --top: name the row in the ranked dimension
                for name in grouped:
                    if name not in ("hour", "day"):
                        row[name] = f"other ({row['other']} more)"
    if args.json:
        print_json(data, out.file)
        return 0
    rows = [[_cost(c, row.get(c)) for c in columns] for row in data["data"]]
    show(columns, rows, console=out, numeric=NUMERIC, title=f"Usage, last {args.last}",
         empty=f"No requests in the last {args.last}.")  # fmt: skip
    return 0


def _cost(column: str, value: Any) -> Any:
    return f"{value:.6f}" if column == "cost_usd" and isinstance(value, int | float) else value


def _row(record: dict[str, Any]) -> list[Any]:
    at = str(record.get("at") or "")[11:19] or None
    return [at if c == "at" else _cost(c, record.get(c)) for c in TAIL]


def tail(
    api: AdminClient,
    args: argparse.Namespace,
    out: Console,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    stop = clock() + args.follow_seconds if args.follow_seconds else None
    after: int | None = None
    recent: deque[list[Any]] = deque(maxlen=SHOWN)
    totals = {"requests": 0, "tokens": 0, "cost": 0.0, "errors": 0}
    live = Live(console=out, auto_refresh=False) if out.is_terminal and not args.json else None
    header_done = False
    try:
        if live is not None:
            live.start()
            live.update(_view(recent, totals, out), refresh=True)
        while stop is None or clock() < stop:
            query = {"limit": "100", **({"after": str(after)} if after is not None else {"limit": "20"})}
            fresh = api.get("/admin/usage/recent?" + urlencode(query))["data"]
            for record in sorted(fresh, key=lambda r: int(r["id"])):
                after = max(after or 0, int(record["id"]))
                totals["requests"] += 1
                totals["tokens"] += int(record.get("total_tokens") or 0)
                totals["cost"] += float(record.get("cost_usd") or 0.0)
                totals["errors"] += int(record.get("status", 200)) >= 400
                if args.json:
                    print_json(record, out.file, line=True)
                elif live is not None:
                    recent.appendleft(_row(record))
                else:
                    lines = _plain_lines([_row(record)], out)
                    if not header_done:
                        out.print(lines[0])
                        header_done = True
                    out.print(lines[1])
            if live is not None:
                live.update(_view(recent, totals, out), refresh=True)
            sleep(POLL)
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()
    return 0


def _plain_lines(rows: list[list[Any]], out: Console) -> list[str]:
    with out.capture() as captured:
        out.print(table(TAIL, rows, out, numeric=NUMERIC))
    return captured.get().splitlines()


def _view(recent: deque[list[Any]], totals: dict[str, Any], out: Console) -> Group:
    summary = Text.assemble(
        ("live ", "bold green"),
        f"{totals['requests']} requests, {totals['tokens']:,} tokens, USD {totals['cost']:.6f}, ",
        (f"{totals['errors']} errors", "red" if totals["errors"] else ""),
        ("   Ctrl-C to stop", "dim"),
    )
    shown = table(TAIL, list(recent), out, title="Requests as they finish", numeric=NUMERIC, optional=SPARE)
    return Group(shown, summary)
