"""``corral keys create|list|revoke``: gateway keys of a running gateway.

``create`` prints the new key once; the gateway keeps only its hash, so it cannot be shown
again. ``--expires`` takes a duration from now (``30d``, ``12h``, ``90m``, ``2w``) or an ISO
8601 time.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.markup import escape

from corral.cli.client import CLIError
from corral.cli.output import make_console, print_json, show
from corral.cli.providers import client, client_options

COLUMNS = ("id", "name", "owner", "scope", "models", "expires_at", "enabled", "last_used_at")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^([0-9]+)([mhdw])$")
SHOWN_ONCE = (
    "Store this key now: it is shown only once and cannot be recovered. "
    "If it is lost, revoke it (`corral keys revoke ID`) and create another."
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("keys", help="create, list and revoke gateway keys")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="issue a key (shown once)")
    create.add_argument("--name", required=True, help="what the key is for, e.g. 'ci' or 'alice-laptop'")
    create.add_argument("--owner", help="who holds it")
    create.add_argument("--scope", choices=["user", "admin"], default="user")
    create.add_argument("--models", help="comma-separated models it may use (default: every model)")
    create.add_argument("--expires", help="30d, 12h, 2w, or an ISO 8601 time (default: never)")
    create.add_argument("--tier", help="a free-form tier label")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--max-parallel", type=int, help="requests in flight at once")
    create.add_argument("--max-budget", type=float, help="spend limit per budget period")
    create.add_argument("--budget-period", help="e.g. 30d")
    client_options(create)
    client_options(actions.add_parser("list", help="every key (never the key itself)"))
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("id", help="the key id (the 8 characters after 'gw_')")
    client_options(revoke)


def expires_at(value: str, now: datetime) -> str:
    """An ISO 8601 UTC time from a duration like '30d' or from an ISO 8601 time."""
    match = _DURATION.match(value.strip())
    if match:
        return (now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})).isoformat()
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CLIError(
            f"--expires: use a duration like 30d, 12h, 90m or 2w, or an ISO 8601 time; got {value!r}."
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


def create_body(args: argparse.Namespace, now: datetime) -> dict[str, Any]:
    body: dict[str, Any] = {"name": args.name, "scope": args.scope}
    optional = {
        "owner": args.owner,
        "tier": args.tier,
        "models": [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None,
        "expires_at": expires_at(args.expires, now) if args.expires else None,
        "rpm": args.rpm,
        "tpm": args.tpm,
        "max_parallel": args.max_parallel,
        "max_budget": args.max_budget,
        "budget_period": args.budget_period,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def run(args: argparse.Namespace) -> int:
    api = client(args)
    if args.action == "create":
        issued = api.request("POST", "/admin/keys", create_body(args, datetime.now(UTC)))
        if args.json:
            print_json(issued)
            print(SHOWN_ONCE, file=sys.stderr)
            return 0
        expiry = issued["expires_at"] or "never"
        about = f"name {issued['name']}, scope {issued['scope']}, expires {expiry}"
        out = make_console()
        out.print(f"Created gateway key [bold]{issued['id']}[/bold] ({escape(about)}):")
        out.print(f"\n    [bold green]{issued['key']}[/bold green]\n", soft_wrap=True)
        out.print(f"[yellow]{SHOWN_ONCE}[/yellow]")
        return 0
    if args.action == "list":
        rows = api.get("/admin/keys")["data"]
        if args.json:
            print_json(rows)
        else:
            show(
                COLUMNS,
                [[row.get(c) for c in COLUMNS] for row in rows],
                empty="No gateway keys yet.",
                optional=("last_used_at", "owner", "models", "expires_at"),
            )
        return 0
    deleted = api.request("DELETE", f"/admin/keys/{args.id}")
    if args.json:
        print_json(deleted)
    else:
        make_console().print(f"Revoked key {args.id}; it no longer works.")
    return 0
