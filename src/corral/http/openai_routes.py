"""The OpenAI-compatible surface: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models.

The edge authenticates each request from its head (the route's access); each handler parses
the body once (size-limited, orjson, a few field checks: no validation framework), hands a
``Call`` to the engine and writes the ``Reply``.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any
from urllib.parse import unquote

from corral.config.routing import POWER_LEVELS
from corral.conversation.body import OPENAI_FIELDS
from corral.core.call import Call, Endpoint
from corral.core.catalog import Catalog
from corral.errors import InvalidRequest
from corral.http import catalog_view
from corral.http.auth import Authenticator, require_model
from corral.http.exchange import Exchange
from corral.http.json_body import check_name, parse_json, refuse_shadowing
from corral.http.parts import Parts
from corral.http.replies import json_reply
from corral.http.routes import Route, RouteTable
from corral.http.serving import run_call


def _check(endpoint: Endpoint, body: dict[str, Any]) -> tuple[str, bool]:
    refuse_shadowing(body, OPENAI_FIELDS)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(
            "'model' is required and must be a non-empty string. GET /v1/models lists them.",
            param="model",
            code="missing_model",
        )
    check_name(model)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream")
    if endpoint is Endpoint.CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest(
                "'messages' must be a non-empty list of {role, content} objects.", param="messages"
            )
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InvalidRequest(
                    f"messages[{i}] must be an object with a string 'role'.", param=f"messages[{i}]"
                )
    elif endpoint is Endpoint.COMPLETION:
        if not isinstance(body.get("prompt"), str | list):
            raise InvalidRequest("'prompt' is required: a string.", param="prompt")
    elif "input" not in body or not isinstance(body["input"], str | list):
        raise InvalidRequest("'input' is required: a string or a list of strings.", param="input")
    return model, stream


class OpenAIRoutes:
    """Handlers of the OpenAI surface. The gateway is taken from ``parts`` on each request: it
    is built at startup (inside the event loop), after the routes exist."""

    def __init__(self, parts: Parts, keys: Authenticator, max_request_bytes: int) -> None:
        self._parts = parts
        self._keys = keys
        self._limit = max_request_bytes

    def add_to(self, table: RouteTable) -> None:
        for prefix in ("/v1", ""):
            for path, endpoint in (
                ("/chat/completions", Endpoint.CHAT),
                ("/completions", Endpoint.COMPLETION),
                ("/embeddings", Endpoint.EMBEDDING),
            ):
                table.add(["POST"], prefix + path, Route(partial(self.serve, endpoint=endpoint)))
        table.add(["GET"], "/v1/models", Route(self.list_models))
        table.add_prefix(["GET"], "/v1/models/", Route(self.get_model))

    def _catalog(self, ex: Exchange) -> Catalog:
        return self._parts.gateway.engine.catalog

    async def serve(self, ex: Exchange, endpoint: Endpoint) -> None:
        started = time.monotonic()
        who = ex.principal or self._keys.check(ex)
        raw = await ex.body(self._limit)
        body = parse_json(raw)
        power = ex.headers.get("x-corral-power")
        if power is not None:
            if power not in POWER_LEVELS:
                raise InvalidRequest(
                    f"x-corral-power must be one of {', '.join(POWER_LEVELS)}.", param="x-corral-power"
                )
            body.setdefault("model", f"corral/{power}")
        model, stream = _check(endpoint, body)
        require_model(who, model)
        if endpoint is Endpoint.EMBEDDING:
            stream = False
        call = Call(
            endpoint=endpoint, body=body, raw=raw, model=model, stream=stream, request_id=ex.request_id,
            client_request_id=ex.client_request_id,
        )  # fmt: skip
        await run_call(ex, self._parts, call, who, started, power)

    async def list_models(self, ex: Exchange) -> None:
        who = ex.principal or self._keys.check(ex)
        rows = self._catalog(ex).listing()
        view = catalog_view.snapshot(self._parts.accountant)  # a model the catalog disables is not listed
        data = [
            _model_row(row.id, row.created, row.owned_by)
            for row in rows
            if who.may_use(row.id) and catalog_view.listed(view, row.owned_by, row.id)
        ]
        await ex.write(json_reply({"object": "list", "data": data}))

    async def get_model(self, ex: Exchange) -> None:
        who = ex.principal or self._keys.check(ex)
        name = unquote(ex.rest)
        require_model(who, name)
        target = self._catalog(ex).resolve(name)[0]
        await ex.write(json_reply(_model_row(name, 0, target.provider)))


def _model_row(model_id: str, created: int, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}
