"""``corral usage``: a summary table; ``corral usage tail``: requests as they finish;
``corral usage compare``: providers side by side. All read a running gateway's /admin/usage."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any
from urllib.parse import urlencode

from corral.cli.client import AdminClient
from corral.cli.providers import client, client_options
from corral.cli.table import render

SUMMARY = ("requests", "total_tokens", "cost_usd", "errors", "latency_p50_ms", "latency_p95_ms")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("usage", help="usage: summary, tail, compare")
    client_options(parser)
    parser.add_argument("view", nargs="?", default="summary", choices=["summary", "tail", "compare"])
    parser.add_argument("--last", default="24h", help="window: 15m, 1h, 7d (default 24h)")
    parser.add_argument(
        "--group-by", default="model", help="provider, model, key, user, hour, day (comma-separated)"
    )
    parser.add_argument("--key-id", dest="key_id", help="only this gateway key id")
    for name in ("user", "model", "provider"):
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
    filters = {"key": args.key_id, "user": args.user, "model": args.model, "provider": args.provider}
    params.update({k: v for k, v in filters.items() if v})
    return urlencode(params)


def run(args: argparse.Namespace) -> int:
    return show(client(args), args)


def show(client: AdminClient, args: argparse.Namespace) -> int:
    if args.view == "tail":
        return _tail(client, args)
    if args.view == "compare":
        data = client.get("/admin/usage/compare?" + _params(args))
        columns: tuple[str, ...] = ("provider", *SUMMARY)
    else:
        data = client.get("/admin/usage?" + _params(args, group_by=args.group_by))
        columns = (*[g for g in args.group_by.split(",") if g], *SUMMARY)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    rows = [[row.get(c) for c in columns] for row in data["data"]]
    print(render(columns, rows) if rows else f"No requests in the last {args.last}.")
    return 0


def _tail(client: AdminClient, args: argparse.Namespace) -> int:
    stop = time.monotonic() + args.follow_seconds if args.follow_seconds else None
    after: int | None = None
    columns = ("at", "key_id", "requested_model", "provider", "status", "total_tokens", "latency_ms")
    printed_header = False
    try:
        while stop is None or time.monotonic() < stop:
            query = {"limit": "100", **({"after": str(after)} if after is not None else {"limit": "20"})}
            for row in client.get("/admin/usage/recent?" + urlencode(query))["data"]:
                after = max(after or 0, int(row["id"]))
                if args.json:
                    print(json.dumps(row), flush=True)
                    continue
                line = render(columns, [[row.get(c) for c in columns]]).splitlines()
                if not printed_header:
                    print(line[0])
                    printed_header = True
                print(line[1], flush=True)
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    return 0
