"""The edge: corral's data-plane listener. Every client-facing route of every surface is
served here by ``EdgeProtocol`` from one route table (``corral.http.routes``); the control
plane (admin API, metrics, console) has its own listener.

One sweeper, not a timer per request, enforces the time limits: a request head must arrive
within ``HEAD_TIMEOUT`` seconds of its first byte, a body may not stall for more than
``BODY_TIMEOUT`` and must arrive whole within ``body_timeout`` of its head, and a keep-alive
connection idle since its last answer is closed after ``KEEPALIVE_TIMEOUT`` (bytes between
requests, such as stray CRLFs, do not count as activity). Writes to a client that stopped
reading give up after ``send_timeout``. ``close`` stops accepting, closes idle connections,
lets answers in progress (streams included) finish for up to the shutdown timeout, then cuts
what is left. Request bodies are counted in a ``BodyBudget`` shared with the control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import time

from corral.edge.protocol import EdgeProtocol
from corral.edge.wire import Clock
from corral.http.bodies import BodyBudget
from corral.http.routes import RouteTable

log = logging.getLogger("corral.edge")

HEAD_TIMEOUT = 30.0
BODY_TIMEOUT = 60.0
KEEPALIVE_TIMEOUT = 75.0
SWEEP_EVERY = 1.0
FIRST_REQUEST_GRACE = 1.0  # seconds a just-accepted connection may take to send its request at shutdown


GC_YOUNG = 7000  # allocations between young collections (CPython's default: 700)


def settle_heap() -> None:
    """Start-up is over: what it built (modules, config, routes, the gateway, some 90,000
    objects) is moved out of the cyclic collector's sight (``gc.freeze``), and young collections
    come every ``GC_YOUNG`` allocations instead of 700, so the objects of requests in flight are
    not promoted, and then rescanned, in bulk. Measured under load, the collector took 8-10 % of
    corral's CPU without this. Done once per process (the first server to start); a request's
    objects are still freed by reference counting the moment it ends."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(GC_YOUNG, older, oldest)


class EdgeServer:
    def __init__(
        self,
        routes: RouteTable,
        max_body: int,
        *,
        max_buffered: int | None = None,
        send_timeout: float = 60.0,
        body_timeout: float = 300.0,
        budget: BodyBudget | None = None,
    ) -> None:
        self.routes = routes
        self.max_body = max_body
        # request-body bytes held by every connection together (shared with the control plane)
        self.budget = budget or BodyBudget(max_buffered if max_buffered is not None else 8 * max_body)
        self.max_buffered = self.budget.limit
        self.send_timeout = send_timeout
        self.body_timeout = body_timeout
        self.clock = Clock()
        self.connections: set[EdgeProtocol] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.now = time.monotonic

    async def start(
        self, host: str, port: int, backlog: int = 2048, *, sock: socket.socket | None = None
    ) -> None:
        """Listen on ``host:port``, or accept on ``sock``, a listening socket made by the
        supervisor of several workers (corral.supervisor.sockets)."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._listener = await loop.create_server(lambda: EdgeProtocol(self), sock=sock, backlog=backlog)
        else:
            self._listener = await loop.create_server(
                lambda: EdgeProtocol(self), host, port, backlog=backlog, reuse_address=True
            )
        self._sweeper = loop.create_task(self._sweep())
        settle_heap()

    @property
    def buffered(self) -> int:
        """Request-body bytes held now, by both planes (the protocol adds and takes back)."""
        return self.budget.held

    @buffered.setter
    def buffered(self, held: int) -> None:
        self.budget.held = held

    @property
    def port(self) -> int:
        assert self._listener is not None
        port: int = self._listener.sockets[0].getsockname()[1]
        return port

    def track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            self.sweep(self.now())

    def sweep(self, now: float) -> None:
        for conn in list(self.connections):
            if conn.busy:  # an answer in progress is the handler's to time, not the sweeper's
                continue
            if conn.in_head:
                late = now - conn.message_started > HEAD_TIMEOUT
            elif conn.in_message:
                late = now - conn.last_io > BODY_TIMEOUT or now - conn.message_started > self.body_timeout
            else:
                late = conn.idle and now - conn.idle_since > KEEPALIVE_TIMEOUT
            if late:
                conn.close()

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 - a drain bound, not a call timeout
        """Stop accepting; wait up to ``timeout`` s for answers in progress; close the rest."""
        if self._listener is not None:
            self._listener.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        fresh = [conn for conn in list(self.connections) if conn.shut()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Connections accepted just before the listener closed get FIRST_REQUEST_GRACE to send
        # their request (a client cannot know it came too late): answered, not reset.
        until = loop.time() + min(FIRST_REQUEST_GRACE, timeout)
        while fresh and loop.time() < until:  # bounded by FIRST_REQUEST_GRACE, at shutdown only
            await asyncio.sleep(0.01)
            fresh = [c for c in fresh if not c.spoke and c in self.connections]
        for conn in fresh:
            conn.close()
        # A request that was still arriving when the server began to stop is answered too: its
        # task starts while we wait, so wait again until none is left (or time is up).
        while self._tasks and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=remaining)
        if self._tasks:
            pending = set(self._tasks)
            log.warning(
                "shutdown: %d answers still in progress after %.0f s; cutting them", len(pending), timeout
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)
        for conn in list(self.connections):
            conn.close()
