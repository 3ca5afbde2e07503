"""``corral serve``: run the gateway as one process, or as a supervisor of N workers.

With ``--workers 1`` (the default, ``server.workers``) this process serves (``corral.server``).
With more, it becomes the supervisor (``corral.supervisor``): it creates the master key,
the encryption key and the schema once, checks what N workers could not do correctly without
Redis, binds both ports (the workers listen on them), prints the addresses once every worker
listens, and starts each worker as this same command with the sockets and its index in the
environment. A worker is recognised by those inherited sockets; it never creates keys and never
prints the addresses.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from corral import __version__
from corral.cli.output import print_json
from corral.config import Config, load_config
from corral.config.listeners import check_admin_host, is_loopback, parse_workers
from corral.errors import ConfigError, CorralError
from corral.security.master_key import MasterKey

if TYPE_CHECKING:
    from corral.server import Addresses

log = logging.getLogger("corral.serve")


def add_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--workers",
        help='worker processes serving the same ports: a number or "auto" (the CPUs usable); '
        "default server.workers, 1",
    )


def serve(args: argparse.Namespace) -> int:
    from corral.home import data_dir
    from corral.security.master_key import load_master_key
    from corral.supervisor.sockets import Inherited

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
    )
    config = _with_overrides(load_config(args.config, demo=args.demo), args)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    worker = Inherited.from_env(os.environ)
    home = data_dir()
    key = load_master_key(config.master_key, home, os.environ, create=worker is None and is_loopback(host))
    if key is None:
        print(
            f"corral: refusing to listen on {host} without a master key: anyone who can reach it could "
            "use your upstreams. Set one with `export CORRAL_MASTER_KEY=$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')` or `master_key:` in the config, or bind to 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    from corral.server import run

    if worker is not None:
        run(config, key.value, host, port, home=home, on_ready=lambda _at: None, worker=worker)
        return 0
    from corral.supervisor.count import resolve

    raw = args.workers if args.workers is not None else config.server.workers
    workers = resolve(parse_workers(raw, lambda message: ConfigError(f"--workers: {message}")))
    if not args.json:
        describe(config)
    if workers == 1:
        run(config, key.value, host, port, home=home, on_ready=lambda at: _announce(args, config, key, at))
        return 0
    return _supervise(args, config, key, host, port, home, workers)


def _with_overrides(config: Config, args: argparse.Namespace) -> Config:
    if args.admin_host or args.admin_port is not None:
        admin = dataclasses.replace(
            config.admin,
            host=args.admin_host or config.admin.host,
            port=config.admin.port if args.admin_port is None else args.admin_port,
        )
        check_admin_host(admin)
        config = dataclasses.replace(config, admin=admin)
    return config


def _supervise(
    args: argparse.Namespace,
    config: Config,
    key: MasterKey,
    host: str,
    port: int,
    home: Path,
    workers: int,
) -> int:
    import asyncio
    import shutil
    import socket
    import tempfile

    from corral.control.workers import problems, refusal, shared_store
    from corral.server import Addresses, url
    from corral.supervisor.prepare import prepare
    from corral.supervisor.sockets import bind
    from corral.supervisor.supervisor import Supervisor

    try:
        effective, stored_keys = asyncio.run(prepare(config, home, os.environ))
    except CorralError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 1
    if not shared_store(config, os.environ):
        found = problems(effective, workers, stored_keys)
        if found:
            print(refusal(found, workers), file=sys.stderr)
            return 2
    sockets: list[socket.socket] = []
    try:
        sockets.append(bind(host, port))  # not listening: the first worker that serves listens
        sockets.append(bind(config.admin.host, config.admin.port))
    except OSError as exc:
        for sock in sockets:
            sock.close()
        print(
            f"corral: cannot listen on {host}:{port} (data plane) and {config.admin.host}:"
            f"{config.admin.port} (control plane): {exc.strerror}. Is another server using one of "
            "those ports? Choose them with --port and --admin-port (server.port, admin.port).",
            file=sys.stderr,
        )
        return 1
    data, admin = sockets
    tls = config.admin.tls_cert is not None and config.admin.tls_key is not None
    at = Addresses(
        data=url("http", host, data.getsockname()[1]),
        admin=url("https" if tls else "http", config.admin.host, admin.getsockname()[1]),
    )
    run_dir = tempfile.mkdtemp(prefix="corral-workers-")  # this run's metrics snapshots
    command = [sys.executable, "-m", "corral", "serve", *_worker_args(args)]
    supervisor = Supervisor(
        command, dict(os.environ), workers, data, admin, config.server.shutdown_timeout, run_dir
    )
    try:
        return supervisor.run(lambda: _announce(args, config, key, at, workers))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        data.close()
        admin.close()


def _worker_args(args: argparse.Namespace) -> list[str]:
    """The worker's command line: the same config and addresses (the sockets are inherited)."""
    out = ["--log-level", args.log_level]
    if args.config:
        out += ["--config", args.config]
    if args.demo:
        out.append("--demo")
    for flag, value in (("--host", args.host), ("--port", args.port), ("--admin-host", args.admin_host)):
        if value is not None:
            out += [flag, str(value)]
    if args.admin_port is not None:
        out += ["--admin-port", str(args.admin_port)]
    return out


def _announce(
    args: argparse.Namespace, config: Config, key: MasterKey, at: Addresses, workers: int = 1
) -> None:
    data, admin = at.data, at.admin
    if args.json:
        console = f"{admin}/console" if config.admin.console else None
        generated = key.value if key.source == "generated" else None  # shown only this once
        shown = {"data": data, "admin": admin, "console": console, "master_key": key.source,
                 "generated_master_key": generated}  # fmt: skip
        print_json({**shown, "workers": workers} if workers > 1 else shown, line=True)
        return
    print(
        f"corral {__version__} listening on {data}  (OpenAI API at {data}/v1, Ollama API at "
        f"{data}/api)\n  control plane (admin API, metrics) on {admin}",
        flush=True,
    )
    if workers > 1:
        print(f"  {workers} worker processes", flush=True)
    if config.admin.console:
        print(f"  console at {admin}/console  (sign in with the master key)", flush=True)
    if key.source == "generated":
        print(
            f"Created a master key and saved it to {key.path} (mode 0600). It is shown only this once:\n"
            f"    {key.value}\nUse it as: Authorization: Bearer <key>",
            flush=True,
        )
    else:
        print(f"Master key: from {key.source}.", flush=True)


def describe(config: Config) -> None:
    for p in config.providers:
        state = "" if p.enabled else " (disabled)"
        print(f"  provider {p.name}: {p.type} at {p.base_url}{state}", flush=True)
    if config.demo:
        print("  provider demo: built-in, model demo/echo", flush=True)
    for m in config.models:
        print(f"  alias {m.name} -> {m.target}", flush=True)
