"""Run the gateway: one process, uvloop, aiohttp's server, graceful shutdown on SIGINT/SIGTERM.

On shutdown the listener closes first, in-flight requests and streams get
``server.shutdown_timeout`` to finish, then upstream pools are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from corral.config.schema import Config
from corral.http.app import create_app

log = logging.getLogger("corral.server")


def run(
    config: Config,
    master_key: str,
    host: str,
    port: int,
    *,
    home: Path | None,
    on_ready: Callable[[str], None],
) -> None:
    try:
        import uvloop

        runner: Callable[..., None] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(_serve(config, master_key, host, port, home, on_ready))


async def _serve(
    config: Config, master_key: str, host: str, port: int, home: Path | None, on_ready: Callable[[str], None]
) -> None:
    app = create_app(config, master_key, home=home)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=config.server.shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        sys.exit(
            f"corral: cannot listen on {host}:{port}: {exc.strerror}. Is another server using "
            "that port? Choose one with --port."
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shown = f"[{host}]" if ":" in host else host
    on_ready(f"http://{shown}:{port}")
    await stop.wait()
    log.info("shutting down: draining in-flight requests (up to %.0f s)", config.server.shutdown_timeout)
    await runner.cleanup()
