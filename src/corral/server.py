"""Run the gateway: one process, uvloop, corral's lean server in front of the aiohttp app,
graceful shutdown on SIGINT/SIGTERM.

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
from corral.edge.server import EdgeServer
from corral.http.app import HOT_ROUTES, MAX_REQUEST_BYTES, create_app

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


class Listener:
    """An app served on host:port: the lean server in front (hot routes), aiohttp behind it."""

    def __init__(self, runner: web.AppRunner, edge: EdgeServer, shutdown_timeout: float) -> None:
        self._runner = runner
        self.edge = edge
        self._shutdown_timeout = shutdown_timeout

    @classmethod
    async def open(
        cls,
        app: web.Application,
        host: str,
        port: int,
        shutdown_timeout: float,
        *,
        handle_signals: bool = False,
    ) -> Listener:
        """Start the app (its startup builds the gateway) and listen; OSError if the port is taken."""
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)
        await runner.setup()
        assert runner.server is not None
        hot = app[HOT_ROUTES]
        edge = EdgeServer(hot, app, runner.server, app[MAX_REQUEST_BYTES])
        try:
            await edge.start(host, port)
        except OSError:
            await runner.cleanup()
            raise
        return cls(runner, edge, shutdown_timeout)

    async def close(self) -> None:
        """Stop listening, let answers in progress finish (up to the shutdown timeout), then stop
        the app (usage flushed, upstream pools closed)."""
        await asyncio.gather(self.edge.close(self._shutdown_timeout), self._runner.shutdown())
        await self._runner.cleanup()


async def _serve(
    config: Config, master_key: str, host: str, port: int, home: Path | None, on_ready: Callable[[str], None]
) -> None:
    app = create_app(config, master_key, home=home)
    try:
        listener = await Listener.open(app, host, port, config.server.shutdown_timeout)
    except OSError as exc:
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
    await listener.close()
