"""``corral providers list|add|test|rm``: manage a running gateway's providers.

Secrets are never command-line arguments (they would land in shell history and ``ps``): the
API key comes from an environment variable (``--api-key-env``) or standard input
(``--api-key-stdin``), and header values from environment variables (``--header-env``).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any
from urllib.parse import quote

from rich.markup import escape

from corral.cli.client import AdminClient, CLIError
from corral.cli.output import make_console, print_json, show

COLUMNS = ("name", "type", "base_url", "managed_by", "enabled", "priority", "api_key", "headers")


def client_options(parser: argparse.ArgumentParser, plane: str = "admin") -> None:
    from corral.cli.main import _client_options  # the same --url/--key/--json as `corral status`

    _client_options(parser, plane)


def client(args: argparse.Namespace) -> AdminClient:
    from corral.cli.main import _client

    return _client(args)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("providers", help="list, add, re-key, test and remove providers")
    actions = parser.add_subparsers(dest="action", required=True)
    client_options(actions.add_parser("list", help="every provider (config file and API)"))

    add = actions.add_parser("add", help="add a provider (stored in the gateway's database)")
    add.add_argument("name")
    add.add_argument("--type", required=True, choices=["ollama", "openai"])
    add.add_argument("--base-url", required=True, help="e.g. http://gpu-box:11434")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--api-key-env", metavar="VAR", help="read the API key from this variable")
    secret.add_argument("--api-key-stdin", action="store_true", help="read the API key from stdin")
    add.add_argument(
        "--header-env",
        action="append",
        default=[],
        metavar="NAME=VAR",
        help="send header NAME with the value of environment variable VAR (repeatable)",
    )
    add.add_argument("--priority", type=int, help="lower is preferred (default 0)")
    add.add_argument("--weight", type=float, help="share for the weighted strategy (default 1)")
    add.add_argument("--models", help="comma-separated model list, instead of discovering them")
    add.add_argument("--max-parallel", type=int, help="requests in flight at once")
    add.add_argument("--timeout", help="read timeout, e.g. 600 or 10m")
    add.add_argument("--no-verify-ssl", action="store_true", help="skip TLS verification (trusted hosts)")
    add.add_argument("--disabled", action="store_true", help="add it disabled")
    client_options(add)

    rotate = actions.add_parser(
        "set-key",
        help="replace a provider's API key (from stdin or an environment variable, never argv)",
        description="Replace the API key of a provider added through the API. The next request uses "
        "the new key; requests already in flight finish with the old one; the old ciphertext is "
        "overwritten in the store and the audit log records the change without the key.",
    )
    rotate.add_argument("name")
    source = rotate.add_mutually_exclusive_group(required=True)
    source.add_argument("--api-key-env", metavar="VAR", help="read the new key from this variable")
    source.add_argument("--api-key-stdin", action="store_true", help="read the new key from stdin")
    client_options(rotate)

    test = actions.add_parser("test", help="probe a provider and count its models")
    test.add_argument("name")
    client_options(test)
    rm = actions.add_parser("rm", help="delete a provider added through the API")
    rm.add_argument("name")
    client_options(rm)


def run(args: argparse.Namespace) -> int:
    api = client(args)
    if args.action == "list":
        return _show(args, api.get("/admin/providers")["data"])
    if args.action == "add":
        created = api.request("POST", "/admin/providers", provider_body(args, os.environ))
        if not args.json:
            make_console().print(f"Added provider '{escape(created['name'])}'; the gateway routes to it now.")
        return _show(args, [created], single=True)
    if args.action == "set-key":
        key = _from_env(os.environ, args.api_key_env, "--api-key-env") if args.api_key_env else _read_secret()
        updated = api.request("PATCH", f"/admin/providers/{_quote(args.name)}", {"api_key": key})
        if args.json:
            print_json(updated)
        else:
            make_console().print(
                f"Replaced the API key of '{escape(args.name)}' (now {updated.get('api_key_preview')}): "
                "the next request uses it; requests in flight finish with the old one."
            )
        return 0
    if args.action == "test":
        result = api.request("POST", f"/admin/providers/{_quote(args.name)}/test")
        out = make_console()
        if args.json:
            print_json(result)
        elif result["success"]:
            found = result["models_found"]
            out.print(
                f"[green]OK[/green]: {escape(args.name)} answered in {result['latency_ms']} ms and lists "
                f"{found} models."
            )
        else:
            out.print(f"[red]FAILED[/red]: {escape(args.name)}: {escape(str(result['error']))}")
        return 0 if result["success"] else 1
    deleted = api.request("DELETE", f"/admin/providers/{_quote(args.name)}")
    if args.json:
        print_json(deleted)
    else:
        make_console().print(f"Deleted provider '{escape(args.name)}'.")
    return 0


def provider_body(args: argparse.Namespace, env: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": args.name, "type": args.type, "base_url": args.base_url}
    if args.api_key_env:
        body["api_key"] = _from_env(env, args.api_key_env, "--api-key-env")
    elif args.api_key_stdin:
        body["api_key"] = _read_secret()
    headers = {}
    for item in args.header_env:
        name, sep, var = item.partition("=")
        if not sep or not name or not var:
            raise CLIError(f"--header-env takes NAME=VAR (the header value comes from $VAR), got {item!r}.")
        headers[name] = _from_env(env, var, "--header-env")
    if headers:
        body["headers"] = headers
    optional = {
        "priority": args.priority,
        "weight": args.weight,
        "max_parallel": args.max_parallel,
        "timeout": args.timeout,
        "models": [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None,
        "verify_ssl": False if args.no_verify_ssl else None,
        "enabled": False if args.disabled else None,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def _from_env(env: Any, var: str, option: str) -> str:
    value = env.get(var)
    if not value:
        raise CLIError(f"{option}: the environment variable {var} is not set (or empty). Export it first.")
    return str(value)


def _read_secret() -> str:
    value = getpass.getpass("API key: ") if sys.stdin.isatty() else sys.stdin.readline()
    value = value.strip()
    if not value:
        raise CLIError("--api-key-stdin: read an empty API key from standard input.")
    return value


def _quote(name: str) -> str:
    return quote(name, safe="")


def _show(args: argparse.Namespace, rows: list[dict[str, Any]], *, single: bool = False) -> int:
    if args.json:
        print_json(rows[0] if single else rows)
        return 0
    table = [
        [
            p["name"],
            p["type"],
            p.get("base_url"),
            p.get("managed_by"),
            p.get("enabled", True),
            p.get("priority", 0),
            p.get("api_key_preview"),
            p.get("header_names"),
        ]
        for p in rows
    ]
    show(COLUMNS, table, empty="No providers.", optional=("headers", "priority", "managed_by", "api_key"))
    return 0
