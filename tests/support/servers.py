"""Run an aiohttp application as a real HTTP server on loopback, in its own thread and loop.

Emulators and the gateway under test both run this way, so sync clients (the official
``openai`` and ``ollama`` libraries) talk to them over real sockets. A gateway app is served
as ``corral serve`` serves it: the data plane by corral's edge on ``url``, the control plane
(admin API, metrics) by aiohttp on ``admin_url``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from corral.http.app import CorralApp
from corral.server import Listener

AppFactory = Callable[[], web.Application | CorralApp | Awaitable[web.Application]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new event loop of ``kind``: "asyncio" or "uvloop" (what `corral serve` runs on)."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if kind != "asyncio":
        raise ValueError(f"unknown loop kind {kind!r}")
    return asyncio.new_event_loop()


class ServerThread:
    """Serve ``factory()`` on 127.0.0.1 until ``stop()``. Use as a context manager."""

    def __init__(
        self, factory: AppFactory, *, port: int = 0, shutdown_timeout: float = 5.0, loop: str = "asyncio"
    ) -> None:
        self._factory = factory
        self.port = port or free_port()
        self.admin_port = free_port()
        self._shutdown_timeout = shutdown_timeout
        self._loop = new_loop(loop)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._listener: Listener | None = None
        self.app: Any = None  # the web.Application served, or the CorralApp

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """A gateway's control plane (the admin API, /metrics)."""
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("server thread did not start within 15 s")
        if self._error is not None:
            raise RuntimeError("server thread failed to start") from self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._cleanup())
        self._loop.close()

    async def _start(self) -> None:
        app = self._factory()
        if not isinstance(app, web.Application | CorralApp):
            app = await app
        self.app = app
        if isinstance(app, CorralApp):  # a gateway: served the way `corral serve` serves it
            self._listener = await Listener.open(
                app, "127.0.0.1", self.port, self._shutdown_timeout, admin_host="127.0.0.1",
                admin_port=self.admin_port,
            )  # fmt: skip
            return
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()

    async def _cleanup(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def call(self, fn: Callable[[], Awaitable[Any]], timeout: float = 10) -> Any:
        """Run a coroutine function on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(fn(), self._loop).result(timeout)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
