"""POST /admin/models/pull, /admin/models/delete and /admin/models/copy: model management on
the Ollama instances, from the control plane (the console, scripts). Admin scope.

These are the data plane's ``/api/pull``, ``/api/delete`` and ``/api/copy``
(``corral.http.ollama_manage``), run over a ``ControlExchange``: one fan-out, one progress
format. The body names the model (``model``, or ``source`` and ``destination`` to copy) and,
optionally, the ``instances`` (default: every Ollama instance corral manages). A pull streams
NDJSON: each instance's progress lines tagged with ``"instance"``, then one summary line.
Failures that the Ollama surface answers as ``{"error": "..."}`` are answered here in the
admin API's error envelope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from corral.console.exchange import ControlExchange
from corral.http.auth import Authenticator
from corral.http.errors import envelope
from corral.http.exchange import Exchange
from corral.http.ollama_manage import Management
from corral.http.parts import Parts


class FleetModelRoutes:
    def __init__(self, parts: Parts, auth: Authenticator, max_request_bytes: int) -> None:
        self._auth = auth
        self._manage = Management(parts, auth, max_request_bytes)

    async def _run(
        self, request: web.Request, handler: Callable[[Exchange], Awaitable[None]]
    ) -> web.StreamResponse:
        ex = ControlExchange(request, self._auth.admin(request))
        await handler(ex)
        return as_envelope(ex.answer())

    async def pull(self, request: web.Request) -> web.StreamResponse:
        return await self._run(request, self._manage.pull)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        return await self._run(request, self._manage.delete)

    async def copy(self, request: web.Request) -> web.StreamResponse:
        return await self._run(request, self._manage.copy)


def as_envelope(response: web.StreamResponse) -> web.StreamResponse:
    """An Ollama-shaped failure (``{"error": "..."}``) in the admin API's error envelope."""
    if (
        not isinstance(response, web.Response)
        or response.status < 400
        or not isinstance(response.body, bytes)
    ):
        return response
    try:
        message = orjson.loads(response.body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return response
    if not isinstance(message, str):
        return response
    missing = response.status == 404
    kind = "not_found_error" if missing else "server_error"
    response.body = envelope(message, kind, code="model_not_found" if missing else "upstream_error")
    return response
