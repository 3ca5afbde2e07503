"""``corral models``: every alias and discovered model of a running gateway."""

from __future__ import annotations

import argparse
from typing import Any

from corral.cli.output import print_json, show
from corral.cli.providers import client, client_options

COLUMNS = ("id", "type", "provider", "context", "capabilities", "aliases")


def add_parser(subparsers: Any) -> None:
    client_options(subparsers.add_parser("models", help="aliases and discovered models, with capabilities"))


def run(args: argparse.Namespace) -> int:
    rows = client(args).get("/admin/models")["data"]
    if args.json:
        print_json(rows)
        return 0
    table = [
        [
            m["id"],
            m["type"],
            m["provider"],
            m["context_length"],
            m["capabilities"],
            "-> " + ", ".join(m.get("targets") or []) if m["type"] == "alias" else m["aliases"],
        ]
        for m in rows
    ]
    show(
        COLUMNS,
        table,
        title=f"{len(rows)} models",
        empty="No models: add a provider, or wait for discovery.",
        optional=("aliases", "capabilities", "provider"),
    )
    return 0
