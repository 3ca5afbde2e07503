"""The Ollama-native data plane: /api/chat, /api/generate, /api/embed, /api/embeddings.

Same guarantees as the OpenAI surface (keys, routing, fallbacks, failover); requests are
parsed once, size-limited, and streamed as NDJSON (``stream`` defaults to true, as in Ollama).
"""

from __future__ import annotations

import time
from typing import Any

from corral.conversation.body import OLLAMA_FIELDS
from corral.core.call import Call, Endpoint, Surface
from corral.errors import InvalidRequest
from corral.http.auth import Authenticator, require_model
from corral.http.exchange import Exchange
from corral.http.json_body import check_name, parse_json, refuse_shadowing
from corral.http.parts import Parts
from corral.http.routes import Route, RouteTable
from corral.http.serving import run_call

_ENDPOINTS = {
    "/api/chat": Endpoint.CHAT,
    "/api/generate": Endpoint.COMPLETION,
    "/api/embed": Endpoint.EMBEDDING,
    "/api/embeddings": Endpoint.LEGACY_EMBEDDING,
}


def _check(endpoint: Endpoint, body: dict[str, Any]) -> tuple[str, bool]:
    refuse_shadowing(body, OLLAMA_FIELDS)  # Ollama reads keys case-insensitively
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required", param="model")
    check_name(model)
    if endpoint in (Endpoint.EMBEDDING, Endpoint.LEGACY_EMBEDDING):
        return model, False
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream must be true or false", param="stream")
    if endpoint is Endpoint.CHAT and not isinstance(body.get("messages", []), list):
        raise InvalidRequest("messages must be a list", param="messages")
    return model, stream


class OllamaRoutes:
    def __init__(self, parts: Parts, auth: Authenticator, max_request_bytes: int) -> None:
        self._parts = parts  # the gateway is taken from it on each request (built at startup)
        self._auth = auth
        self._limit = max_request_bytes

    def add_to(self, table: RouteTable) -> None:
        for path in _ENDPOINTS:
            table.add(["POST"], path, Route(self.serve, surface=Surface.OLLAMA))

    async def serve(self, ex: Exchange) -> None:
        started = time.monotonic()
        who = ex.principal or self._auth.check(ex)
        endpoint = _ENDPOINTS[ex.path]
        raw = await ex.body(self._limit)
        body = parse_json(raw)
        model, stream = _check(endpoint, body)
        require_model(who, model)
        call = Call(
            endpoint=endpoint,
            body=body,
            raw=raw,
            model=model,
            stream=stream,
            request_id=ex.request_id,
            surface=Surface.OLLAMA,
            client_request_id=ex.client_request_id,
        )
        await run_call(ex, self._parts, call, who, started)
