"""Run the gateway: one process, uvloop, two listeners (the data plane on corral's edge, the
control plane on aiohttp), graceful shutdown on SIGINT/SIGTERM.

The app's parts (``corral.http.parts``: the gateway, the control plane, accounting) are
started by corral before either listener opens, and stopped after both have drained. On
shutdown the listeners close first, in-flight requests and streams get
``server.shutdown_timeout`` to finish, then usage is flushed and upstream pools are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from corral.config.schema import AdminConfig, Config
from corral.edge.server import EdgeServer
from corral.http.app import CorralApp, create_app
from corral.http.control import HANDLER_ARGS, ControlHandler
from corral.supervisor.sockets import Inherited

log = logging.getLogger("corral.server")


@dataclass(frozen=True, slots=True)
class Addresses:
    data: str  # e.g. http://127.0.0.1:4000
    admin: str  # e.g. http://127.0.0.1:4001


def run(
    config: Config,
    master_key: str,
    host: str,
    port: int,
    *,
    home: Path | None,
    on_ready: Callable[[Addresses], None],
    worker: Inherited | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. As one of a supervisor's workers (``worker``), accept on the
    sockets it made, tell it when ready, and stop when it is gone."""
    try:
        import uvloop

        runner: Callable[..., None] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(_serve(config, master_key, host, port, home, on_ready, worker))


def url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


class CannotListen(OSError):
    """A listener could not bind its address (most often: another server has the port)."""


class CertificateError(Exception):
    """The control plane's TLS certificate or key cannot be loaded."""


def tls_context(admin: AdminConfig) -> ssl.SSLContext | None:
    if admin.tls_cert is None or admin.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(admin.tls_cert, admin.tls_key)
    except (OSError, ssl.SSLError) as exc:  # FileNotFoundError and SSLError are OSErrors too
        raise CertificateError(
            f"corral: cannot load the control plane's TLS certificate (admin.tls_cert: "
            f"{admin.tls_cert}, admin.tls_key: {admin.tls_key}): {exc.strerror or exc}. Check that "
            "both files exist, are readable, are PEM, and that the key belongs to the certificate."
        ) from None
    return context


class Listener:
    """An app served on its two addresses: the data plane by the edge, the control plane (admin
    API, metrics) by aiohttp. No request ever passes from one server to the other."""

    def __init__(
        self,
        parts: AsyncExitStack,
        runner: web.AppRunner,
        control: asyncio.Server,
        edge: EdgeServer,
        addresses: Addresses,
        shutdown_timeout: float,
    ) -> None:
        self._parts = parts
        self._runner = runner
        self._control = control
        self.edge = edge
        self.addresses = addresses
        self._shutdown_timeout = shutdown_timeout

    @classmethod
    async def open(
        cls,
        app: CorralApp,
        host: str,
        port: int,
        shutdown_timeout: float,
        *,
        admin_host: str | None = None,
        admin_port: int | None = None,
        sockets: tuple[socket.socket, socket.socket] | None = None,
    ) -> Listener:
        """Start the app's parts (the gateway among them) and listen on both addresses, or accept
        on ``sockets`` (data, admin: listening sockets a supervisor made); ``CannotListen`` (an
        OSError) if a port is taken, ``CertificateError`` for the control plane's TLS files."""
        parts = app.parts
        config = parts.config
        admin_host = admin_host or config.admin.host
        admin_port = config.admin.port if admin_port is None else admin_port
        context = tls_context(config.admin)  # a bad certificate fails before anything starts
        stack = AsyncExitStack()
        await stack.enter_async_context(app.running())
        runner = web.AppRunner(
            app.control, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout
        )
        try:
            await runner.setup()
        except BaseException:
            await stack.aclose()
            raise
        server = config.server
        edge = EdgeServer(
            app.data, server.max_request_bytes, max_buffered=server.max_buffered_bytes,
            send_timeout=server.send_timeout, body_timeout=server.body_timeout, budget=parts.body_budget,
        )  # fmt: skip
        handlers = runner.server
        assert handlers is not None
        loop = asyncio.get_running_loop()
        control: asyncio.Server | None = None
        quiet: Any = None  # aiohttp types access_log as a Logger; None turns the access log off

        try:
            if sockets is not None:
                control = await loop.create_server(
                    lambda: ControlHandler(handlers, loop=loop, access_log=quiet, **HANDLER_ARGS),
                    sock=sockets[1], ssl=context, backlog=128,
                )  # fmt: skip
            else:
                control = await loop.create_server(
                    lambda: ControlHandler(handlers, loop=loop, access_log=quiet, **HANDLER_ARGS),
                    admin_host, admin_port, ssl=context, reuse_address=True, backlog=128,
                )  # fmt: skip
            admin_url = url("https" if context else "http", admin_host, control.sockets[0].getsockname()[1])
            await edge.start(host, port, sock=sockets[0] if sockets is not None else None)
        except BaseException as exc:  # a port taken, or anything else: nothing is left running
            if control is not None:
                control.close()
            await edge.close(0)
            await runner.cleanup()
            await stack.aclose()
            if isinstance(exc, OSError) and not isinstance(exc, CannotListen):
                raise CannotListen(exc.errno, exc.strerror) from exc
            raise
        addresses = Addresses(data=url("http", host, edge.port), admin=admin_url)
        return cls(stack, runner, control, edge, addresses, shutdown_timeout)

    async def close(self) -> None:
        """Stop listening, let answers in progress finish (up to the shutdown timeout), then stop
        the app's parts (usage flushed, upstream pools closed)."""
        self._control.close()
        try:
            await asyncio.gather(self.edge.close(self._shutdown_timeout), self._runner.shutdown())
            await self._runner.cleanup()
        finally:
            await self._parts.aclose()


async def _serve(
    config: Config,
    master_key: str,
    host: str,
    port: int,
    home: Path | None,
    on_ready: Callable[[Addresses], None],
    worker: Inherited | None,
) -> None:
    app = create_app(config, master_key, home=home)
    try:
        listener = await Listener.open(
            app, host, port, config.server.shutdown_timeout,
            sockets=(worker.data, worker.admin) if worker is not None else None,
        )  # fmt: skip
    except CertificateError as exc:
        sys.exit(str(exc))
    except CannotListen as exc:
        sys.exit(
            f"corral: cannot listen on {host}:{port} (data plane) and {config.admin.host}:"
            f"{config.admin.port} (control plane): {exc.strerror}. Is another server using one of "
            "those ports? Choose them with --port and --admin-port (server.port, admin.port)."
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if worker is not None:
        worker.watch_supervisor(loop, stop.set)
        worker.report_ready()
    else:
        on_ready(listener.addresses)
    await stop.wait()
    log.info("shutting down: draining in-flight requests (up to %.0f s)", config.server.shutdown_timeout)
    await listener.close()
