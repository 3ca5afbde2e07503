"""``corral``: the command line entry point and its subcommands."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence

from corral import __version__
from corral.cli import admin, importer, keys, models, providers, pull, status, usage
from corral.cli.client import AdminClient, CLIError, default_key, default_url, home_dir
from corral.config import Config, load_config
from corral.config.listeners import check_admin_host, is_loopback
from corral.errors import ConfigError

COMMANDS = {
    "providers": providers,
    "keys": keys,
    "models": models,
    "admin": admin,
    "usage": usage,
    "pull": pull,
    "import": importer,
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

    check = sub.add_parser("check", help="validate a config file and print what it defines")
    check.add_argument("--config", default=os.environ.get("CORRAL_CONFIG"), required=False)

    status = sub.add_parser("status", help="show every deployment's health (from a running gateway)")
    _client_options(status)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def _client_options(parser: argparse.ArgumentParser, plane: str = "admin") -> None:
    default = (
        "the gateway's data plane (default: $CORRAL_URL or http://127.0.0.1:4000)"
        if plane == "data"
        else "the gateway's control plane (default: $CORRAL_ADMIN_URL or http://127.0.0.1:4001)"
    )
    parser.add_argument("--url", help=default)
    parser.set_defaults(plane=plane)
    parser.add_argument(
        "--key", help="admin key (default: $CORRAL_ADMIN_KEY, $CORRAL_MASTER_KEY, or the key file)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _client(args: argparse.Namespace) -> AdminClient:
    env = os.environ
    url = args.url or default_url(env, getattr(args, "plane", "admin"))
    return AdminClient(url, args.key or default_key(env, home_dir(env)))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check":
            return _check(args)
        if args.command == "status":
            return status.run(_client(args), args)
        if args.command in COMMANDS:
            code: int = COMMANDS[args.command].run(args)
            return code
    except ConfigError as exc:
        print(f"corral: configuration error: {exc}", file=sys.stderr)
        return 2
    except importer.Unreadable as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 2
    except CLIError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 1
    return 1


def _serve(args: argparse.Namespace) -> int:
    from corral.home import data_dir
    from corral.security.master_key import load_master_key
    from corral.server import Addresses, run

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = load_config(args.config, demo=args.demo)
    if args.admin_host or args.admin_port is not None:
        admin = dataclasses.replace(
            config.admin,
            host=args.admin_host or config.admin.host,
            port=config.admin.port if args.admin_port is None else args.admin_port,
        )
        check_admin_host(admin)
        config = dataclasses.replace(config, admin=admin)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    home = data_dir()
    key = load_master_key(config.master_key, home, os.environ, create=is_loopback(host))
    if key is None:
        print(
            f"corral: refusing to listen on {host} without a master key: anyone who can reach it could "
            "use your upstreams. Set one with `export CORRAL_MASTER_KEY=$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')` or `master_key:` in the config, or bind to 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    _describe(config)

    def ready(at: Addresses) -> None:
        print(
            f"corral {__version__} listening on {at.data}  (OpenAI API at {at.data}/v1, Ollama API at "
            f"{at.data}/api)\n  control plane (admin API, metrics) on {at.admin}",
            flush=True,
        )
        if config.admin.console:
            print(f"  console at {at.admin}/console  (sign in with the master key)", flush=True)
        if key.source == "generated":
            print(
                f"Created a master key and saved it to {key.path} (mode 0600). It is shown only this once:\n"
                f"    {key.value}\nUse it as: Authorization: Bearer <key>",
                flush=True,
            )
        else:
            print(f"Master key: from {key.source}.", flush=True)

    run(config, key.value, host, port, home=home, on_ready=ready)
    return 0


def _describe(config: Config) -> None:
    for p in config.providers:
        state = "" if p.enabled else " (disabled)"
        print(f"  provider {p.name}: {p.type} at {p.base_url}{state}", flush=True)
    if config.demo:
        print("  provider demo: built-in, model demo/echo", flush=True)
    for m in config.models:
        print(f"  alias {m.name} -> {m.target}", flush=True)


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(f"{config.source}: OK")
    _describe(config)
    return 0
