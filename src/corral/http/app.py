"""The app factory: ``create_app(config, master_key)`` builds both planes.

It returns the control plane's aiohttp application (admin API, ``/metrics``), whose startup
builds the gateway (HTTP clients, catalog, background discovery) inside the event loop and
whose cleanup closes it. The data plane's route table (every client-facing route of every
surface, served by ``corral.edge``) is kept in it under ``DATA_ROUTES``, with the same parts.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from corral.config.schema import Config
from corral.control.plane import WATCH_INTERVAL, ControlPlane
from corral.core.engine import Engine
from corral.gateway import Gateway, SlotShare
from corral.http.admin import add_admin_routes
from corral.http.agent_routes import AgentRoutes
from corral.http.auth import Authenticator
from corral.http.bodies import BODY_BUDGET, BodyBudget
from corral.http.control import HANDLER_ARGS, control_middlewares, on_prepare
from corral.http.exchange import Exchange
from corral.http.guesses import THROTTLE, GuessThrottle
from corral.http.observability import BUDGETS, FLEET, METRICS, accounting, metrics_route
from corral.http.ollama_fleet import FleetRoutes
from corral.http.ollama_routes import OllamaRoutes
from corral.http.openai_routes import OpenAIRoutes
from corral.http.replies import json_reply
from corral.http.routes import Route, RouteTable
from corral.http.serving import ACCOUNTANT
from corral.identity import WorkerIdentity

GATEWAY = web.AppKey("gateway", Gateway)
DATA_ROUTES = web.AppKey("data_routes", RouteTable)  # the data plane, served by corral.edge
CONTROL = web.AppKey("control", ControlPlane)
CONFIG = web.AppKey("config", Config)
IDENTITY = web.AppKey("identity", WorkerIdentity)  # this worker: host, pid, index (/admin/health)
READY_STORE_TIMEOUT = 2.0


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
        middlewares=control_middlewares((config.admin.host, *config.admin.allowed_hosts)),
        client_max_size=config.server.max_request_bytes,
        handler_args=HANDLER_ARGS,
    )
    app.on_response_prepare.append(on_prepare)
    app[CONFIG] = config
    app[BODY_BUDGET] = BodyBudget(config.server.max_buffered_bytes)  # both planes' bodies together
    app[THROTTLE] = GuessThrottle()  # wrong keys per address, on every control-plane route
    me = WorkerIdentity.from_env(os.environ if env is None else env)
    app[IDENTITY] = me

    auth = Authenticator(master_key)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        plane = None
        effective = config
        if home is not None:
            plane = await ControlPlane.open(config, home, os.environ if env is None else env)
            auth.keys = plane.keys
            app[CONTROL] = plane
            effective = await plane.effective()
        environ = os.environ if env is None else env
        shared = config.redis_url or environ.get("CORRAL_REDIS_URL")  # workers share state through it
        split = SlotShare() if shared else SlotShare(me.index, me.workers)  # shared: max_parallel in Redis
        gw = gateway or Gateway.create(effective, slots=split)
        app[GATEWAY] = gw
        cluster = None
        if shared:
            from corral.cluster.node import Cluster  # redis is loaded only when used

            prefix = environ.get("CORRAL_REDIS_PREFIX", "corral:")  # as the limiter's
            cluster = Cluster.open(shared, prefix, me, environ, gw, plane)
            gw.share_pins(shared, prefix)  # session affinity's pins, under <prefix>:affinity:
            await cluster.start()
        await gw.start()
        if plane is not None:
            # without Redis, other workers' and replicas' admin changes are seen in the audit log
            alone = me.workers == 1 and plane.store.dialect == "sqlite"
            plane.start(gw, watch=None if shared or alone else WATCH_INTERVAL)
        try:
            async with accounting(config, os.environ if env is None else env, gw, plane, home) as parts:
                app[ACCOUNTANT] = parts.accountant
                app[METRICS] = parts.metrics
                if cluster is not None:
                    parts.metrics.registry.register(cluster)
                if parts.budgets is not None:
                    app[BUDGETS] = parts.budgets
                if parts.fleet is not None:
                    app[FLEET] = parts.fleet
                yield
        finally:
            if cluster is not None:
                await cluster.close()
            await gw.close()
            if plane is not None:
                await plane.close()

    def engine(parts: Mapping[Any, Any]) -> Engine:
        gateway: Gateway = parts[GATEWAY]
        return gateway.engine

    app.cleanup_ctx.append(lifecycle)
    limit = config.server.max_request_bytes
    table = RouteTable(auth.gate)
    OpenAIRoutes(engine, auth, limit).add_to(table)
    OllamaRoutes(engine, auth, limit).add_to(table)
    AgentRoutes(engine, auth, limit, ping_interval=config.server.ping_interval).add_to(table)
    FleetRoutes(lambda parts: parts[GATEWAY], auth, limit).add_to(table)
    table.add(["GET"], "/healthz", Route(healthz, access="open"))
    table.add(["GET"], "/readyz", Route(readyz, access="open"))
    app[DATA_ROUTES] = table
    add_admin_routes(app, auth)
    if config.admin.console:
        from corral.console.setup import add_console_routes

        add_console_routes(app, auth)
    app.router.add_get("/metrics", metrics_route(auth, config.server.metrics_auth))
    return app


async def healthz(ex: Exchange) -> None:
    """Alive: the process answers."""
    await ex.write(json_reply({"status": "ok"}))


async def readyz(ex: Exchange) -> None:
    """Ready: corral itself can serve (config loaded, store reachable, first discovery round
    attempted). Whether upstreams answer is reported, not required: a gateway whose upstreams
    are down, or that has none yet, must still get the admin calls that would fix that."""
    gw: Gateway = ex.app[GATEWAY]
    status = gw.discovery.status
    ok = sum(1 for s in status.values() if s.ok)
    store = await _store_state(ex.app.get(CONTROL))
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
