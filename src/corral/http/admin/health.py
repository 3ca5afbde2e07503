"""GET /admin/health: every deployment's state (admin scope)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from corral.gateway import Gateway
from corral.http.auth import Authenticator
from corral.identity import WorkerIdentity
from corral.routing.state import DeploymentState


def deployment_view(state: DeploymentState, now: float, base_url: str | None) -> dict[str, Any]:
    ejected_for = max(0.0, state.ejected_until - now)
    return {
        "name": state.name,
        "type": state.type,
        "base_url": base_url,
        "state": state.status(now),
        "in_flight": state.in_flight,
        "max_parallel": state.max_parallel or None,
        "latency_ms": round(state.ewma_ms, 2) if state.ewma_ms is not None else None,
        "check_latency_ms": round(state.check_latency_ms, 2) if state.check_latency_ms is not None else None,
        "last_check": datetime.fromtimestamp(state.last_check, UTC).isoformat() if state.last_check else None,
        "last_check_ok": state.last_check_ok,
        "consecutive_failures": state.consecutive_failures,
        "ejected_for_s": round(ejected_for, 1) if ejected_for else None,
        "loaded_models": sorted(state.loaded),
        "requests": state.requests,
        "failures": state.failures,
        "last_error": state.last_error,
        # the second level: models that failed here (the instance's other models keep serving)
        "models": state.model_view(now),
        "first_token": state.first_tokens.snapshot(),  # per model, warm and cold: samples, p50/p95/p99 (s)
    }


class AdminRoutes:
    def __init__(
        self,
        gateway: Callable[[web.Request], Gateway],
        keys: Authenticator,
        identity: Callable[[web.Request], WorkerIdentity] | None = None,
    ) -> None:
        self._gateway = gateway
        self._keys = keys
        self._identity = identity

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/admin/health", self.health, allow_head=False)

    async def health(self, request: web.Request) -> web.Response:
        self._keys.admin(request)
        gw = self._gateway(request)
        now = time.monotonic()
        urls = {p.name: p.base_url for p in gw.config.providers}
        rows = [deployment_view(s, now, urls.get(s.name)) for s in gw.fleet.states.values()]
        budget = gw.fleet.budget
        body: dict[str, Any] = {
            "deployments": rows,
            "retry_budget": {"active": budget.active, "retrying": budget.retrying, "denied": budget.denied},
        }
        if self._identity is not None:
            body["worker"] = self._identity(request).view()  # the worker that answered
        if gw.cluster is not None:  # every worker of every replica sharing its Redis
            body["cluster"] = await gw.cluster.view()
        return web.Response(body=orjson.dumps(body), content_type="application/json")
