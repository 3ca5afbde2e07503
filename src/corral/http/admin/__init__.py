"""The admin REST API under /admin (admin scope on every route)."""

from __future__ import annotations

from aiohttp import web

from corral.http.admin.health import AdminRoutes
from corral.http.auth import Authenticator


def add_admin_routes(app: web.Application, auth: Authenticator) -> None:
    from corral.http.app import GATEWAY

    AdminRoutes(lambda request: request.app[GATEWAY], auth).add_to(app)
