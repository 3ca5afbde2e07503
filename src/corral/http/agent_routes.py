"""The agents' surfaces: Anthropic's ``POST /v1/messages`` (and ``/v1/messages/count_tokens``)
and OpenAI's ``POST /v1/responses`` (stateless).

Each handler parses the body once, checks the model name and the stream flag, reads the body
into the conversation model (so a bad request is refused in its API's envelope before it is
admitted) and hands the ``Call`` to the engine, which serves it from every upstream type
(``corral.providers.model_path``). Keys come as ``x-api-key`` or ``Authorization: Bearer``;
``anthropic-version`` and ``anthropic-beta`` are accepted and never break a request; Claude
Code's ``?beta=true`` is ignored (routes match on the path). A ``/v1/messages`` stream whose
upstream is slow to start gets ``ping`` events meanwhile (``keepalive``, every
``server.ping_interval``); the Responses API defines no such event.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from corral.conversation.anthropic import requests as messages_requests
from corral.conversation.call import Call, Endpoint, Surface
from corral.conversation.surfaces import request_of
from corral.errors import CorralError, InvalidRequest
from corral.http.auth import Authenticator, require_model
from corral.http.errors import error_parts
from corral.http.exchange import Exchange
from corral.http.json_body import check_name, parse_json
from corral.http.keepalive import Pinger
from corral.http.parts import Parts
from corral.http.replies import json_reply
from corral.http.routes import Route, RouteTable
from corral.http.serving import run_call

CHARS_PER_TOKEN = 4  # count_tokens is an estimate: corral cannot run every upstream's tokenizer


def _messages_error_event(exc: CorralError) -> bytes:
    """An engine error after pings went out: the Messages API's in-band ``error`` event."""
    return b"event: error\ndata: " + error_parts(exc, surface=Surface.MESSAGES)[1] + b"\n\n"


def _model_and_stream(body: dict[str, Any]) -> tuple[str, bool]:
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
    return model, stream


class AgentRoutes:
    """Handlers of the Messages and Responses surfaces."""

    def __init__(
        self,
        parts: Parts,
        keys: Authenticator,
        max_request_bytes: int,
        *,
        ping_interval: float = 10.0,
    ) -> None:
        self._parts = parts  # the gateway is taken from it on each request (built at startup)
        self._keys = keys
        self._limit = max_request_bytes
        self._pinger = Pinger(ping_interval, _messages_error_event)

    def add_to(self, table: RouteTable) -> None:
        table.add(["POST"], "/v1/messages", Route(self.messages, surface=Surface.MESSAGES))
        table.add(["POST"], "/v1/messages/count_tokens", Route(self.count_tokens, surface=Surface.MESSAGES))
        table.add(["POST"], "/v1/responses", Route(self.responses, surface=Surface.RESPONSES))

    async def messages(self, ex: Exchange) -> None:
        await self._serve(ex, Surface.MESSAGES)

    async def responses(self, ex: Exchange) -> None:
        await self._serve(ex, Surface.RESPONSES)

    async def _serve(self, ex: Exchange, surface: Surface) -> None:
        started = time.monotonic()
        who = ex.principal or self._keys.check(ex)
        raw = await ex.body(self._limit)
        body = parse_json(raw)
        model, stream = _model_and_stream(body)
        require_model(who, model)
        call = Call(
            endpoint=Endpoint.CHAT,
            body=body,
            raw=raw,
            model=model,
            stream=stream,
            request_id=ex.request_id,
            surface=surface,
            client_request_id=ex.client_request_id,
        )
        request_of(call)  # read once, now: a bad request is refused before it is admitted
        pinger = self._pinger if stream and surface is Surface.MESSAGES else None
        await run_call(ex, self._parts, call, who, started, pinger=pinger)

    async def count_tokens(self, ex: Exchange) -> None:
        """An estimate of the prompt's tokens (its text and tool definitions, 4 characters a
        token), checked as a Messages request is; nothing is sent upstream."""
        who = ex.principal or self._keys.check(ex)
        body = parse_json(await ex.body(self._limit))
        model, _ = _model_and_stream(body)
        require_model(who, model)
        req = messages_requests.read(Endpoint.CHAT, body, count_only=True)
        chars = sum(len(m.text()) + len(m.reasoning) for m in req.messages)
        chars += sum(len(c.name) + len(c.arguments_json()) for m in req.messages for c in m.tool_calls)
        chars += sum(len(orjson.dumps(t.definition)) for t in req.tools or [])
        tokens = max(1, -(-chars // CHARS_PER_TOKEN))
        await ex.write(json_reply({"input_tokens": tokens}))
