"""``corral``: the command line entry point and its subcommands.

argparse, not typer: the CLI starts in a few tens of milliseconds (it runs in scripts, shell
completions and health checks), needs no extra dependency, and its completion scripts are
generated from the same parser tree (``corral completion bash|zsh|fish``). Output goes
through rich (``corral.cli.output``); every command takes ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from corral import __version__
from corral.cli import (
    admin,
    catalog,
    chat,
    completion,
    importer,
    keys,
    models,
    providers,
    pull,
    rules,
    status,
    usage,
)
from corral.cli.client import AdminClient, CLIError, default_key, default_url, home_dir
from corral.cli.output import make_console, print_json
from corral.cli.serve import add_arguments as add_serve_arguments
from corral.cli.serve import describe
from corral.config import load_config
from corral.errors import ConfigError

COMMANDS = {
    "status": status,
    "chat": chat,
    "providers": providers,
    "keys": keys,
    "models": models,
    "admin": admin,
    "usage": usage,
    "pull": pull,
    "catalog": catalog,
    "rules": rules,
    "import": importer,
    "completion": completion,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral", description="An Ollama-first LLM gateway.")
    parser.add_argument("--version", action="version", version=f"corral {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--config",
        default=os.environ.get("CORRAL_CONFIG"),
        help="YAML config file (default: $CORRAL_CONFIG; without one, a local Ollama is used)",
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port of the data plane, the API clients use (default 4000)")
    serve.add_argument(
        "--admin-host", help="address of the control plane: admin API, metrics (default 127.0.0.1)"
    )
    serve.add_argument("--admin-port", type=int, help="port of the control plane (default 4001)")
    serve.add_argument("--demo", action="store_true", help="add the built-in demo provider (model demo/echo)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--json", action="store_true", help="print the addresses as one JSON line when ready")
    add_serve_arguments(serve)

    check = sub.add_parser("check", help="validate a config file and print what it defines")
    check.add_argument("--config", default=os.environ.get("CORRAL_CONFIG"), required=False)
    check.add_argument("--json", action="store_true", help="print what it defines as JSON")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def parser() -> argparse.ArgumentParser:
    """The whole command tree (``corral completion`` reads it)."""
    return _parser()


def _client_options(parser: argparse.ArgumentParser, plane: str = "admin") -> None:
    default = (
        "the gateway's data plane (default: $CORRAL_URL or http://127.0.0.1:4000)"
        if plane == "data"
        else "the gateway's control plane (default: $CORRAL_ADMIN_URL or http://127.0.0.1:4001)"
    )
    parser.add_argument("--url", help=default)
    parser.set_defaults(plane=plane)
    parser.add_argument(
        "--key",
        help="a gateway key (default: $CORRAL_API_KEY, $CORRAL_ADMIN_KEY, $CORRAL_MASTER_KEY, key file)"
        if plane == "data"
        else "admin key (default: $CORRAL_ADMIN_KEY, $CORRAL_MASTER_KEY, or the key file)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _client(args: argparse.Namespace) -> AdminClient:
    env = os.environ
    plane = getattr(args, "plane", "admin")
    url = args.url or default_url(env, plane)
    return AdminClient(url, args.key or default_key(env, home_dir(env), plane), plane=plane)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check":
            return _check(args)
        if args.command in COMMANDS:
            code: int = COMMANDS[args.command].run(args)
            return code
    except ConfigError as exc:
        if getattr(args, "json", False) and args.command == "check":
            print_json({"ok": False, "error": str(exc)})
        print(f"corral: configuration error: {exc}", file=sys.stderr)
        return 2
    except importer.Unreadable as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 2
    except CLIError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 1


def _serve(args: argparse.Namespace) -> int:
    from corral.cli.serve import serve

    return serve(args)


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.json:
        print_json(
            {
                "ok": True,
                "source": config.source,
                "providers": [
                    {"name": p.name, "type": p.type, "base_url": p.base_url, "enabled": p.enabled}
                    for p in config.providers
                ],
                "aliases": [
                    {"name": m.name, "targets": [t.target for t in m.targets]} for m in config.models
                ],
                "prices": len(config.prices),
            }
        )
        return 0
    make_console().print(f"[green]{config.source}: OK[/green]")
    describe(config)
    return 0
