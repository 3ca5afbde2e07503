"""The app factory: ``create_app(config, master_key)`` returns a ready aiohttp application.

Routes are fixed when the app is built; the gateway (HTTP clients, catalog, background
discovery) is built on startup inside the event loop and closed on cleanup.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from corral.config.schema import Config
from corral.control.plane import ControlPlane
from corral.core.engine import Engine
from corral.gateway import Gateway
from corral.http.admin import add_admin_routes
from corral.http.auth import Authenticator
from corral.http.errors import error_middleware
from corral.http.exchange import HotRoute
from corral.http.observability import BUDGETS, METRICS, accounting, metrics_route
from corral.http.ollama_fleet import FleetRoutes
from corral.http.ollama_routes import OllamaRoutes
from corral.http.openai_routes import OpenAIRoutes
from corral.http.serving import ACCOUNTANT

GATEWAY = web.AppKey("gateway", Gateway)
# POST path -> handler of the routes the lean server (corral.edge) serves itself
HOT_ROUTES = web.AppKey("hot_routes", dict[str, HotRoute])
MAX_REQUEST_BYTES = web.AppKey("max_request_bytes", int)
CONTROL = web.AppKey("control", ControlPlane)


def create_app(
    config: Config,
    master_key: str,
    *,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
    gateway: Gateway | None = None,
) -> web.Application:
    """Build the app. With ``home`` the control plane (store, gateway keys, admin changes) runs
    too; without it the gateway serves the config file alone, with the master key only."""
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=config.server.max_request_bytes,
        handler_args={"max_field_size": 16 * 1024, "max_line_size": 16 * 1024},
    )

    auth = Authenticator(master_key)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        plane = None
        effective = config
        if home is not None:
            plane = await ControlPlane.open(config, home, os.environ if env is None else env)
            auth.keys = plane.keys
            app[CONTROL] = plane
            effective = await plane.effective()
        gw = gateway or Gateway.create(effective)
        app[GATEWAY] = gw
        await gw.start()
        if plane is not None:
            plane.start(gw)
        try:
            async with accounting(config, os.environ if env is None else env, gw, plane, home) as parts:
                app[ACCOUNTANT] = parts.accountant
                app[METRICS] = parts.metrics
                if parts.budgets is not None:
                    app[BUDGETS] = parts.budgets
                yield
        finally:
            await gw.close()
            if plane is not None:
                await plane.close()

    def engine(parts: Mapping[Any, Any]) -> Engine:
        gateway: Gateway = parts[GATEWAY]
        return gateway.engine

    app.cleanup_ctx.append(lifecycle)
    openai = OpenAIRoutes(engine, auth, config.server.max_request_bytes)
    openai.add_to(app)
    add_admin_routes(app, auth)
    ollama = OllamaRoutes(engine, auth, config.server.max_request_bytes)
    ollama.add_to(app)
    app[HOT_ROUTES] = {**openai.hot_routes(), **ollama.hot_routes()}
    app[MAX_REQUEST_BYTES] = config.server.max_request_bytes
    FleetRoutes(lambda request: request.app[GATEWAY], auth, config.server.max_request_bytes).add_to(app)
    app.router.add_get("/metrics", metrics_route(auth, config.server.metrics_auth))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    """Ready: discovery has run once and at least one provider answered."""
    gw = request.app[GATEWAY]
    status = gw.discovery.status
    ok = sum(1 for s in status.values() if s.ok)
    if not gw.discovery.first_round.is_set():
        state, code = "starting", 503
    elif ok == 0:
        state, code = "no_upstream_reachable", 503
    else:
        state, code = "ready", 200
    body = {"status": state, "providers_ok": ok, "providers_total": len(status)}
    return web.Response(status=code, body=orjson.dumps(body), content_type="application/json")
