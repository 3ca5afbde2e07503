"""The console's own routes on the control plane: the page, its files, the session, and the
few calls a signed-in user of any scope makes (everything else goes through /admin).

``GET /console`` is the HTML shell; ``/console/assets/<build>/...`` its scripts and styles.
``POST /console/session`` signs in with a key (JSON ``{"key": ...}``), sets the session cookie
and answers the session's CSRF token, the only time it is handed out; ``GET`` (with that token,
as every call made with the cookie) tells the page who it is; ``DELETE`` signs out. Under
``/console/api/``: ``me`` (the caller's key, limits and budget used), ``usage`` and
``usage/series`` (the caller's own usage), ``models`` (what the caller may use) and ``chat``
(the playground, as ``POST /admin/playground/chat`` but for any scope).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from corral.console.assets import Assets
from corral.console.session import Sessions, check_csrf, check_origin, cookie_name, is_secure
from corral.errors import AuthenticationFailed, CorralError, InvalidRequest
from corral.http.admin.input import read_object
from corral.http.admin.playground import PlaygroundRoutes
from corral.http.auth import MAX_KEY, Authenticator
from corral.http.bodies import too_large
from corral.http.guesses import TooManyFailures, client_of
from corral.http.parts import Parts
from corral.keys.principal import Principal
from corral.limits import Limits
from corral.usage.query import UsageFilter, UsageQuery, parse_group_by, parse_step
from corral.usage.spend import spend_since

SIGN_IN_MAX = 8192  # bytes: a sign-in is {"key": "..."}; a key is at most 512 characters (3 KiB escaped)
SIGN_IN_FAILED = (
    "That key was not accepted. Use the master key (printed when corral first started, and kept in "
    "its data directory) or an admin gateway key (gw_...)."
)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


class _KeyHeaders:
    """The one header ``Authenticator`` reads, built from a key typed into the sign-in form."""

    __slots__ = ("headers",)

    def __init__(self, key: str) -> None:
        self.headers: Mapping[str, str] = {"authorization": f"Bearer {key}"}


def principal_view(who: Principal) -> dict[str, Any]:
    return {
        "key_id": who.key_id,
        "scope": who.scope,
        "name": who.name,
        "owner": who.owner,
        "models": None if who.models is None else sorted(who.models),
        "master": who.is_master,
    }


class ConsoleRoutes:
    def __init__(
        self,
        auth: Authenticator,
        sessions: Sessions,
        parts: Parts,
        assets: Assets,
        playground: PlaygroundRoutes,
    ) -> None:
        self._auth = auth
        self._sessions = sessions
        self._parts = parts
        self._throttle = parts.throttle
        self._assets = assets
        self._playground = playground

    def add_to(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", self.to_console, allow_head=False)
        r.add_get("/console", self.shell, allow_head=False)
        r.add_get("/console/", self.to_console, allow_head=False)
        r.add_get("/console/assets/{build}/{path:.+}", self.asset, allow_head=False)
        r.add_post("/console/session", self.sign_in)
        r.add_get("/console/session", self.whoami, allow_head=False)
        r.add_delete("/console/session", self.sign_out)
        r.add_get("/console/api/me", self.me, allow_head=False)
        r.add_get("/console/api/usage", self.usage, allow_head=False)
        r.add_get("/console/api/usage/series", self.series, allow_head=False)
        r.add_get("/console/api/models", self.models, allow_head=False)
        r.add_post("/console/api/chat", self._playground.chat_as_caller)

    # the page ------------------------------------------------------------------------------
    async def to_console(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/console")

    async def shell(self, request: web.Request) -> web.Response:
        return web.Response(body=self._assets.shell, content_type="text/html", charset="utf-8")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        return self._assets.response(request, request.match_info["build"], request.match_info["path"])

    # the session ---------------------------------------------------------------------------
    async def sign_in(self, request: web.Request) -> web.Response:
        check_origin(request)  # login CSRF: only the console's own page signs a browser in
        length = request.content_length
        if length is not None and length > SIGN_IN_MAX:
            raise too_large(SIGN_IN_MAX, length)
        if request.content_type != "application/json":  # a form cannot send this without CORS
            raise InvalidRequest(
                'Send the sign-in as JSON ({"key": "..."}) with Content-Type: application/json.',
                code="not_json",
            )
        client = client_of(request)
        wait = self._throttle.wait(client)  # refused attempts above are never counted
        if wait > 0:
            raise TooManyFailures(wait)
        body = await read_object(request, SIGN_IN_MAX)
        key = body.get("key")
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
            raise InvalidRequest('Send the key to sign in with as {"key": "..."}.', param="key")
        try:
            who = self._auth.principal(_KeyHeaders(key.strip()))
        except AuthenticationFailed:
            self._throttle.failed(client)
            raise AuthenticationFailed(SIGN_IN_FAILED, code="sign_in_failed") from None
        name = cookie_name(request)
        old = request.cookies.get(name)
        if old:
            self._sessions.close(old)
        token, session = self._sessions.open(who)
        response = _json({"csrf": session.csrf, "principal": principal_view(who)})
        response.set_cookie(
            name, token, path="/", httponly=True, samesite="Strict", secure=is_secure(request)
        )  # the page keeps the CSRF token; this answer is the only one that carries it
        return response

    async def whoami(self, request: web.Request) -> web.Response:
        token = request.cookies.get(cookie_name(request))
        found = self._sessions.lookup(token, touch=False) if token else None
        if found is None:
            raise AuthenticationFailed("Not signed in. Sign in with your key.", code="not_signed_in")
        session, who = found
        check_csrf(request, session)  # the cookie alone tells nothing, not even who it is for
        return _json({"principal": principal_view(who), "idle_timeout_s": self._sessions.idle})

    async def sign_out(self, request: web.Request) -> web.Response:
        self._auth.check(request)  # the session's CSRF token is required to end it
        name = cookie_name(request)
        token = request.cookies.get(name)
        if token:
            self._sessions.close(token)
        response = _json({"signed_out": True})
        response.del_cookie(name, path="/", secure=is_secure(request))
        return response

    # the caller's own view -----------------------------------------------------------------
    def _store(self, request: web.Request) -> UsageQuery | None:
        plane = self._parts.control
        return UsageQuery(plane.store.engine) if plane is not None else None

    async def me(self, request: web.Request) -> web.Response:
        who = self._auth.check(request)
        out: dict[str, Any] = {"principal": principal_view(who), "limits": dict(who.limits), "budget": None}
        budget = who.limits.get("max_budget")
        plane = self._parts.control
        if budget is not None and plane is not None:
            try:
                limits = Limits.from_mapping(who.limits)
            except CorralError:
                limits = None
            if limits is not None and limits.period is not None:
                since = datetime.fromtimestamp(limits.period.start(datetime.now(UTC).timestamp()), UTC)
                spent = await spend_since(plane.store.engine, "key_id", [who.key_id], since)
                out["budget"] = {
                    "max_budget": budget,
                    "period": limits.period.text,
                    "since": since.isoformat().replace("+00:00", "Z"),
                    "spent": spent.get(who.key_id, 0.0),
                }
        return _json(out)

    def _own(self, request: web.Request, who: Principal) -> UsageFilter:
        params = {
            k: v for k, v in request.query.items() if k in ("last", "since", "until", "model") and v.strip()
        }
        if "since" not in params:
            params.setdefault("last", "24h")
        return UsageFilter.from_params({**params, "key": who.key_id}, datetime.now(UTC))

    async def usage(self, request: web.Request) -> web.Response:
        who = self._auth.check(request)
        query = self._store(request)
        where = self._own(request, who)
        rows = await query.summary(where, parse_group_by(request.query.get("group_by"))) if query else []
        return _json({"data": [r.view() for r in rows]})

    async def series(self, request: web.Request) -> web.Response:
        who = self._auth.check(request)
        query = self._store(request)
        where = self._own(request, who)
        assert where.since is not None
        step = parse_step(request.query.get("step"), datetime.now(UTC) - where.since)
        points = await query.series(where, step, ()) if query else []
        return _json({"step": step, "data": [p.view() for p in points]})

    async def models(self, request: web.Request) -> web.Response:
        who = self._auth.check(request)
        gw = self._parts.gateway
        rows = [
            {"id": row.id, "owned_by": row.owned_by} for row in gw.catalog.listing() if who.may_use(row.id)
        ]
        levels = sorted(f"corral/{level}" for level in gw.config.router.power_levels)
        return _json({"data": rows, "power_levels": [lv for lv in levels if who.may_use(lv)]})
