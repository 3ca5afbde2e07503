"""``corral rules list|add|rm``: routing rules by power level and tier of a running gateway.

A rule sends a key tier's requests for ``corral/<level>`` to a model (an alias or
provider/model), lower priority first, heavier weight first within a priority; ``--tier all``
(the default) covers keys of any other tier. Rules from the YAML file are listed, read-only.
"""

from __future__ import annotations

import argparse
from typing import Any

from corral.cli.output import make_console, print_json, show
from corral.cli.providers import client, client_options

COLUMNS = ("id", "level", "tier", "model", "priority", "weight", "managed_by")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("rules", help="route power levels by the caller's key tier")
    actions = parser.add_subparsers(dest="action", required=True)
    client_options(actions.add_parser("list", help="every rule, the YAML file's first"))
    add = actions.add_parser("add", help="add a rule (validated, applied at once)")
    add.add_argument("level", choices=["eco", "balanced", "precision"])
    add.add_argument("model", help="an alias or provider/model")
    add.add_argument("--tier", default="all", help="the key tier it applies to (default: all)")
    add.add_argument("--priority", type=int, default=0, help="lower first (default 0)")
    add.add_argument("--weight", type=float, default=1.0, help="heavier first within a priority")
    client_options(add)
    remove = actions.add_parser("rm", help="delete a rule made through the API")
    remove.add_argument("id", help="the rule's id (corral rules list)")
    client_options(remove)


def run(args: argparse.Namespace) -> int:
    api = client(args)
    if args.action == "list":
        rows = api.get("/admin/rules")["data"]
        if args.json:
            print_json(rows)
        else:
            show(COLUMNS, [[row.get(c) for c in COLUMNS] for row in rows], empty="No routing rules.")
        return 0
    if args.action == "add":
        body = {
            "level": args.level,
            "model": args.model,
            "tier": args.tier,
            "priority": args.priority,
            "weight": args.weight,
        }
        made = api.request("POST", "/admin/rules", body)
        if args.json:
            print_json(made)
        else:
            make_console().print(
                f"Added rule {made['id']}: corral/{args.level} for tier {args.tier} -> {args.model}"
            )
        return 0
    deleted = api.request("DELETE", f"/admin/rules/{args.id}")
    if args.json:
        print_json(deleted)
    else:
        make_console().print(f"Deleted rule {args.id}.")
    return 0
