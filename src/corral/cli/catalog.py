"""``corral catalog list|import|set|rm``: the model catalog of a running gateway.

``import PROVIDER`` fills the catalog from the provider's models (capabilities and context
length; Ollama's ``/api/show``), after showing what would change (``--dry-run`` stops there;
``--yes`` skips the question). ``set PROVIDER MODEL`` creates or changes one entry: prices
are USD per million tokens (``--input 0.15 --output 0.6``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from corral.cli.client import AdminClient, CLIError
from corral.cli.output import make_console, print_json, show, table
from corral.cli.providers import client, client_options

COLUMNS = ("provider", "model", "display_name", "enabled", "input", "output", "context", "capabilities")


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("catalog", help="the model catalog: prices, capabilities, context lengths")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every catalog entry")
    listing.add_argument("--provider", help="only this provider's models")
    client_options(listing)
    importing = actions.add_parser("import", help="import a provider's models (prices are left to you)")
    importing.add_argument("provider")
    importing.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    importing.add_argument("--yes", action="store_true", help="apply without asking")
    client_options(importing)
    setting = actions.add_parser("set", help="create or change one entry")
    setting.add_argument("provider")
    setting.add_argument("model")
    setting.add_argument("--display-name")
    setting.add_argument("--input", type=float, help="USD per million input tokens")
    setting.add_argument("--output", type=float, help="USD per million output tokens")
    setting.add_argument("--context-length", type=int)
    setting.add_argument("--capabilities", help="comma-separated, e.g. completion,tools")
    setting.add_argument("--notes")
    state = setting.add_mutually_exclusive_group()
    state.add_argument("--enable", action="store_true", help="list it in /v1/models and /api/tags")
    state.add_argument("--disable", action="store_true", help="leave it out of the model listings")
    client_options(setting)
    removing = actions.add_parser("rm", help="remove an entry")
    removing.add_argument("provider")
    removing.add_argument("model")
    client_options(removing)


def _path(provider: str, model: str) -> str:
    return f"/admin/catalog/{quote(provider, safe='')}/{quote(model, safe=':/')}"


def rows(entries: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            e["provider"],
            e["model"],
            e.get("display_name"),
            e.get("enabled"),
            e.get("input_price"),
            e.get("output_price"),
            e.get("context_length"),
            e.get("capabilities"),
        ]
        for e in entries
    ]


def table_for(entries: list[dict[str, Any]], console: Console) -> Table:
    return table(
        COLUMNS,
        rows(entries),
        console,
        numeric=("input", "output", "context"),
        optional=("display_name", "capabilities", "context"),
        title="Model catalog (prices: USD per million tokens)",
    )


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    api = client(args)
    out = console or make_console()
    if args.action == "list":
        query = f"?provider={quote(args.provider, safe='')}" if args.provider else ""
        entries = api.get("/admin/catalog" + query)["data"]
        if args.json:
            print_json(entries, out.file)
        else:
            if entries:
                out.print(table_for(entries, out))
            else:
                out.print("The catalog is empty. Fill it with `corral catalog import PROVIDER`.")
        return 0
    if args.action == "import":
        return import_models(api, args, out)
    if args.action == "set":
        return set_entry(api, args, out)
    deleted = api.request("DELETE", _path(args.provider, args.model))
    if args.json:
        print_json(deleted, out.file)
    else:
        out.print(f"Removed {escape(args.provider)}/{escape(args.model)} from the catalog.")
    return 0


def import_models(api: AdminClient, args: argparse.Namespace, out: Console) -> int:
    body = {"provider": args.provider, "dry_run": True}
    plan = api.request("POST", "/admin/catalog/import", body)
    if args.json and (args.dry_run or not args.yes):
        print_json(plan, out.file)
        if args.dry_run:
            return 0
    elif not args.json:
        render_plan(plan, out)
    changes = len(plan["added"]) + len(plan["updated"])
    if args.dry_run or not changes:
        return 0
    if not args.yes:
        if args.json or not sys.stdin.isatty():
            raise CLIError(
                "Not applied: pass --yes to import without a question (or --dry-run to only look)."
            )
        if out.input(f"Apply these {changes} change(s)? [y/N] ").strip().lower() not in ("y", "yes"):
            out.print("Nothing changed.")
            return 0
    done = api.request("POST", "/admin/catalog/import", {"provider": args.provider})
    if args.json:
        print_json(done, out.file)
    else:
        out.print(f"[green]Imported[/green] {len(done['added'])} new and {len(done['updated'])} updated "
                  f"model(s) of {escape(args.provider)}. Set prices with `corral catalog set`.")  # fmt: skip
    return 0


def render_plan(plan: dict[str, Any], out: Console) -> None:
    mode = "would change" if plan["dry_run"] else "changed"
    out.print(f"[bold]{escape(plan['provider'])}[/bold] lists {plan['found']} model(s); the catalog {mode}:")
    table = [[a["model"], "add", a.get("context_length"), a.get("capabilities")] for a in plan["added"]]
    for u in plan["updated"]:
        what = ", ".join(f"{k} {v['from']} -> {v['to']}" for k, v in u["changes"].items())
        table.append([u["model"], "update", None, what])
    show(
        ("model", "change", "context", "capabilities"),
        table,
        console=out,
        empty="  nothing to add or update.",
    )
    if plan["unchanged"]:
        out.print(f"[dim]{len(plan['unchanged'])} unchanged.[/dim]")
    if plan["not_listed"]:
        out.print(
            "[yellow]In the catalog but not listed by the provider now[/yellow]: "
            + escape(", ".join(plan["not_listed"]))
        )
    if plan["show_failed"]:
        out.print(f"[yellow]/api/show failed for[/yellow]: {escape(', '.join(plan['show_failed']))}")


def set_entry(api: AdminClient, args: argparse.Namespace, out: Console) -> int:
    fields: dict[str, Any] = {
        "display_name": args.display_name,
        "input_price": args.input,
        "output_price": args.output,
        "context_length": args.context_length,
        "notes": args.notes,
        "capabilities": [c.strip() for c in args.capabilities.split(",") if c.strip()]
        if args.capabilities
        else None,
    }
    changes = {k: v for k, v in fields.items() if v is not None}
    if args.enable or args.disable:
        changes["enabled"] = bool(args.enable)
    path = _path(args.provider, args.model)
    try:
        entry = api.request("PATCH", path, changes) if changes else api.get(path)
        verb = "Updated"
    except CLIError as exc:
        if "HTTP 404" not in str(exc):
            raise
        entry = api.request(
            "POST", "/admin/catalog", {"provider": args.provider, "model": args.model, **changes}
        )
        verb = "Added"
    if args.json:
        print_json(entry, out.file)
        return 0
    out.print(f"{verb} {escape(args.provider)}/{escape(args.model)}:")
    show(COLUMNS, rows([entry]), console=out, numeric=("input", "output", "context"))
    return 0
