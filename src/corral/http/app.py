"""The app factory: ``create_app(config, master_key)`` builds both planes over one set of parts.

It returns a ``CorralApp``: the ``Parts`` (``corral.http.parts``: the gateway, the control
plane, accounting, and their lifecycle), the data plane's route table (every client-facing
route of every surface, served by ``corral.edge``) and the control plane's aiohttp application
(admin API, console, ``/metrics``). Both planes are given the same parts when they are built;
neither reads the other, and the parts are started and stopped by corral
(``CorralApp.running()``), not by either server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from corral.config.schema import Config
from corral.control.plane import ControlPlane
from corral.gateway import Gateway
from corral.http.admin import add_admin_routes
from corral.http.agent_routes import AgentRoutes
from corral.http.auth import Authenticator
from corral.http.bodies import BODY_BUDGET
from corral.http.control import HANDLER_ARGS, control_middlewares, on_prepare
from corral.http.exchange import Exchange
from corral.http.guesses import THROTTLE
from corral.http.observability import metrics_route
from corral.http.ollama_fleet import FleetRoutes
from corral.http.ollama_routes import OllamaRoutes
from corral.http.openai_routes import OpenAIRoutes
from corral.http.parts import Parts
from corral.http.replies import json_reply
from corral.http.routes import Route, RouteTable

READY_STORE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class CorralApp:
    """The two planes over one set of parts; ``running()`` starts the parts, the servers serve."""

    parts: Parts
    data: RouteTable  # the data plane, served by corral.edge
    control: web.Application  # the control plane, served by aiohttp

    @asynccontextmanager
    async def running(self) -> AsyncIterator[CorralApp]:
        async with self.parts.running():
            yield self


def create_app(
    config: Config,
    master_key: str,
    *,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    gateway: Gateway | None = None,
) -> CorralApp:
    """Build the app. With ``home`` the control plane (store, gateway keys, admin changes) runs
    too; without it the gateway serves the config file alone, with the master key only."""
    auth = Authenticator(master_key)
    parts = Parts(config, auth, home=home, env=env, gateway=gateway)
    limit = config.server.max_request_bytes
    table = RouteTable(auth.gate)
    OpenAIRoutes(parts, auth, limit).add_to(table)
    OllamaRoutes(parts, auth, limit).add_to(table)
    AgentRoutes(parts, auth, limit, ping_interval=config.server.ping_interval).add_to(table)
    FleetRoutes(parts, auth, limit).add_to(table)
    health = Health(parts)
    table.add(["GET"], "/healthz", Route(health.alive, access="open"))
    table.add(["GET"], "/readyz", Route(health.ready, access="open"))
    return CorralApp(parts, table, control_app(config, auth, parts))


def control_app(config: Config, auth: Authenticator, parts: Parts) -> web.Application:
    """The control plane: the admin API, the console (``admin.console``) and ``/metrics``."""
    app = web.Application(
        middlewares=control_middlewares((config.admin.host, *config.admin.allowed_hosts)),
        client_max_size=config.server.max_request_bytes,
        handler_args=HANDLER_ARGS,
    )
    app.on_response_prepare.append(on_prepare)
    app[BODY_BUDGET] = parts.body_budget  # counted with the data plane's bodies (read_body)
    app[THROTTLE] = parts.throttle  # wrong keys per address (throttle_guesses)
    add_admin_routes(app, auth, parts)
    if config.admin.console:
        from corral.console.setup import add_console_routes

        add_console_routes(app, auth, parts)
    app.router.add_get("/metrics", metrics_route(auth, parts, config.server.metrics_auth))
    return app


class Health:
    """``/healthz`` and ``/readyz`` on the data plane."""

    def __init__(self, parts: Parts) -> None:
        self._parts = parts

    async def alive(self, ex: Exchange) -> None:
        """Alive: the process answers."""
        await ex.write(json_reply({"status": "ok"}))

    async def ready(self, ex: Exchange) -> None:
        """Ready: corral itself can serve (config loaded, store reachable, first discovery round
        attempted). Whether upstreams answer is reported, not required: a gateway whose
        upstreams are down, or that has none yet, must still get the admin calls that would fix
        that."""
        gw = self._parts.gateway
        status = gw.discovery.status
        ok = sum(1 for s in status.values() if s.ok)
        store = await _store_state(self._parts.control)
        if not gw.discovery.first_round.is_set():
            state, code = "starting", 503
        elif store not in ("ok", "none"):
            state, code = "store_unreachable", 503
        else:
            state, code = "ready", 200
        body = {
            "status": state,
            "store": store,
            "providers_ok": ok,
            "providers_total": len(status),
            "upstreams": "reachable" if ok else ("none_configured" if not status else "none_reachable"),
        }
        await ex.write(json_reply(body, status=code))


async def _store_state(plane: ControlPlane | None) -> str:
    if plane is None:
        return "none"
    try:
        async with asyncio.timeout(READY_STORE_TIMEOUT):
            answered = await plane.store.ping()
    except TimeoutError:
        return "timeout"
    return "ok" if answered else "unreachable"
