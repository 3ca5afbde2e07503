"""Putting the console on the control plane: ``add_console_routes(app, auth)`` adds the page,
its files, sign-in and the console's own calls (``corral.console.routes``), lets the admin API
accept the console's session cookie as well as a key (``Authenticator.sessions``), and puts the
security headers on every answer of the control plane: a strict Content-Security-Policy on the
console, no caching of anything the page reads, no MIME sniffing, no referrer.
"""

from __future__ import annotations

from aiohttp import web

from corral.console.assets import Assets
from corral.console.routes import ConsoleRoutes
from corral.console.session import Sessions
from corral.http.admin.playground import PlaygroundRoutes
from corral.http.auth import Authenticator
from corral.http.parts import Parts

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer: no sniffing, no referrer; console pages a strict CSP and no framing;
    anything but a versioned asset is never stored by a cache."""
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    if request.path == "/console" or request.path.startswith("/console/"):
        headers["Content-Security-Policy"] = CSP
        headers["X-Frame-Options"] = "DENY"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if not request.path.startswith("/console/assets/") or response.status >= 400:
        headers["Cache-Control"] = "no-store"


def add_console_routes(app: web.Application, auth: Authenticator, parts: Parts) -> None:
    config = parts.config
    sessions = Sessions(lambda: auth.keys, config.admin.session_idle, lifetime=config.admin.session_max)
    auth.sessions = sessions
    playground = PlaygroundRoutes(parts, auth, config.server.max_request_bytes)
    routes = ConsoleRoutes(auth, sessions, parts, Assets.from_package(), playground)
    routes.add_to(app)
    app.on_response_prepare.append(security_headers)


__all__ = ["CSP", "add_console_routes"]
