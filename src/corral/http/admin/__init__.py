"""The admin REST API under /admin (admin scope on every route).

The route table below is the whole API; ``openapi.py`` describes the same routes, and a test
checks that the two agree and that every route answers 401 without a key and 403 to a
user-scope key.
"""

from __future__ import annotations

from aiohttp import web

from corral.http.admin.aliases import AliasRoutes
from corral.http.admin.audit import AuditRoutes
from corral.http.admin.budgets import BudgetRoutes
from corral.http.admin.catalog import CatalogRoutes
from corral.http.admin.context import AdminContext
from corral.http.admin.fleet_models import FleetModelRoutes
from corral.http.admin.health import AdminRoutes
from corral.http.admin.keys import KeyRoutes
from corral.http.admin.models import ModelRoutes
from corral.http.admin.openapi import OpenAPIRoute
from corral.http.admin.plan import PlanRoutes
from corral.http.admin.playground import PlaygroundRoutes
from corral.http.admin.providers import ProviderRoutes
from corral.http.admin.rules import RuleRoutes
from corral.http.admin.usage import UsageRoutes
from corral.http.auth import Authenticator
from corral.http.parts import Parts


def add_admin_routes(app: web.Application, auth: Authenticator, parts: Parts) -> None:
    ctx = AdminContext(auth, parts)
    AdminRoutes(ctx.gateway, auth, lambda request: parts.identity).add_to(app)
    providers, aliases, keys = ProviderRoutes(ctx), AliasRoutes(ctx), KeyRoutes(ctx)
    usage = UsageRoutes(auth, parts)
    limit = parts.config.server.max_request_bytes
    plan, fleet = PlanRoutes(ctx), FleetModelRoutes(parts, auth, limit)
    playground = PlaygroundRoutes(parts, auth, limit)
    catalog = CatalogRoutes(ctx)
    rules = RuleRoutes(ctx)
    models = ModelRoutes(ctx)
    app.on_shutdown.append(models.close)  # its /api/show asks in the background
    routes = [
        ("GET", "/admin/openapi.json", OpenAPIRoute(ctx).get),
        ("GET", "/admin/providers", providers.list),
        ("POST", "/admin/providers", providers.create),
        ("GET", "/admin/providers/{name}", providers.get),
        ("PATCH", "/admin/providers/{name}", providers.update),
        ("DELETE", "/admin/providers/{name}", providers.delete),
        ("POST", "/admin/providers/{name}/test", providers.test),
        ("POST", "/admin/providers/{name}/check", plan.check),
        ("GET", "/admin/models", models.list),
        ("POST", "/admin/models/pull", fleet.pull),
        ("POST", "/admin/models/delete", fleet.delete),
        ("POST", "/admin/models/copy", fleet.copy),
        ("GET", "/admin/route", plan.route),
        ("POST", "/admin/playground/chat", playground.chat),
        ("GET", "/admin/aliases", aliases.list),
        ("POST", "/admin/aliases", aliases.create),
        ("GET", "/admin/aliases/{name:.+}", aliases.get),
        ("PATCH", "/admin/aliases/{name:.+}", aliases.update),
        ("DELETE", "/admin/aliases/{name:.+}", aliases.delete),
        ("GET", "/admin/rules", rules.list),
        ("POST", "/admin/rules", rules.create),
        ("DELETE", "/admin/rules/{id}", rules.delete),
        ("GET", "/admin/keys", keys.list),
        ("POST", "/admin/keys", keys.create),
        ("GET", "/admin/keys/{id}", keys.get),
        ("PATCH", "/admin/keys/{id}", keys.update),
        ("DELETE", "/admin/keys/{id}", keys.delete),
        ("GET", "/admin/catalog", catalog.list),
        ("POST", "/admin/catalog", catalog.create),
        ("POST", "/admin/catalog/import", catalog.import_),
        ("GET", "/admin/catalog/{provider}/{model:.+}", catalog.get),
        ("PATCH", "/admin/catalog/{provider}/{model:.+}", catalog.update),
        ("DELETE", "/admin/catalog/{provider}/{model:.+}", catalog.delete),
        ("GET", "/admin/budgets", BudgetRoutes(ctx).list),
        ("GET", "/admin/audit", AuditRoutes(ctx).list),
        ("GET", "/admin/usage", usage.summary),
        ("GET", "/admin/usage/recent", usage.recent),
        ("GET", "/admin/usage/compare", usage.compare),
        ("GET", "/admin/usage/series", usage.series),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
