"""The ``anthropic`` provider type: the hosted Anthropic API and other servers that speak the
Messages API (Ollama >= 0.14 and Ollama Cloud, vLLM >= 0.11.1, LM Studio, llama.cpp).

A ``/v1/messages`` call is passed through: the body re-encoded with the routed model, the answer
(or its named events) relayed as it comes. Every other chat call (OpenAI chat completions,
Ollama's ``/api/chat``, ``/v1/responses``) is read into the conversation model once and written
as a Messages request (``conversation.anthropic.requests.write``), and the Messages answer or
stream is read back (``answers.read``, ``streams.MessagesReader``) and written in the client's
API. The key goes as ``Authorization: Bearer`` (the current SDK's way, which Ollama Cloud
requires); every request carries ``anthropic-version``. Base URL without ``/v1``, as the SDK's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Final

import orjson

from corral.config.schema import ProviderConfig
from corral.conversation.answer import Event
from corral.conversation.anthropic import answers as messages_answers
from corral.conversation.anthropic import requests as messages_requests
from corral.conversation.anthropic.streams import MessagesReader
from corral.conversation.body import with_model
from corral.conversation.call import Attempt, Call, Endpoint, ModelInfo, Probe, Reply, Surface
from corral.errors import InvalidRequest, UpstreamError
from corral.httpclient import Pool, Response
from corral.httpclient.pool import encode_headers
from corral.providers import model_path, native_relay
from corral.providers.passthrough import Renamer
from corral.providers.upstream import health_get, json_object, make_pool, rejected, upstream_errors

API_VERSION: Final = "2023-06-01"
HEADERS: Final = encode_headers({"Content-Type": "application/json"})
PATHS: Final = {"messages": "/v1/messages", "models": "/v1/models", "health": "/v1/models"}
_ERROR_EVENT: Final = b"event: error"


class AnthropicProvider:
    type = "anthropic"
    speaks = frozenset({Surface.MESSAGES})

    def __init__(self, cfg: ProviderConfig, pool: Pool | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        # every request, discovery's and health checks' included, carries the API version
        headers = {"anthropic-version": API_VERSION, **cfg.headers}
        self._pool = pool or make_pool(replace(cfg, headers=headers))

    def path(self, kind: str) -> str:
        return self.cfg.paths.get(kind) or PATHS[kind]

    async def converse(self, call: Call, attempt: Attempt) -> Reply:
        """A call from a surface it does not speak: answered by ``send``, which translates it."""
        return await self.send(call, attempt)

    async def send(self, call: Call, attempt: Attempt) -> Reply:
        if call.endpoint is not Endpoint.CHAT:
            raise InvalidRequest(
                f"'{self.name}' speaks the Anthropic Messages API, which has no completions or embeddings; "
                "route this model to an Ollama or OpenAI-compatible provider for them."
            )
        if call.surface is Surface.MESSAGES:
            return await self._pass_through(call, attempt)
        started = model_path.now_ns()
        req = model_path.request_of(call)
        body = messages_requests.write(req, attempt.model)
        body["stream"] = call.stream
        resp = await self._post(orjson.dumps(body))
        if not call.stream:
            raw = await self._read(resp)
            return model_path.answered(call, messages_answers.read(self._object(raw)), started)
        return model_path.streamed(call, self.name, self._events(resp), started)

    async def _post(self, payload: bytes) -> Response:
        async with upstream_errors(self.cfg):
            resp = await self._pool.request("POST", self.path("messages"), payload, HEADERS)
        if resp.status >= 300:
            raise await rejected(self.cfg, resp)
        return resp

    async def _read(self, resp: Response) -> bytes:
        try:
            async with upstream_errors(self.cfg):
                return await resp.read()
        finally:
            resp.release()

    def _object(self, raw: bytes) -> dict[str, Any]:
        return json_object(self.name, raw)

    async def _events(self, resp: Response) -> AsyncIterator[list[Event]]:
        reader = MessagesReader()
        try:
            async with upstream_errors(self.cfg):
                async for batch in model_path.read_stream(resp.chunks(), reader):
                    yield batch
        finally:
            if reader.done:
                resp.release()
            else:
                resp.close()

    async def _pass_through(self, call: Call, attempt: Attempt) -> Reply:
        """A Messages call, passed through (``native_relay``: the client's model name in the
        answer, the usage noted, an interrupted stream ended with an ``error`` event)."""
        resp = await self._post(with_model(call.raw, call.body, attempt.model))
        content_type = resp.headers.get("content-type", "application/json")
        if call.stream and content_type.startswith("text/event-stream"):
            reply = Reply(status=resp.status, content_type="text/event-stream")
            reply.chunks = native_relay.relay(
                self.cfg, resp, reply.outcome, call.model, native_relay.MESSAGES, attempt.model
            )
            return reply
        body = await self._read(resp)
        reply = Reply(
            status=resp.status,
            body=Renamer(call.model, attempt.model)(body),
            content_type=content_type.split(";")[0],
        )
        native_relay.note_whole(Surface.MESSAGES, body, reply.outcome)
        return reply

    async def list_models(self) -> list[ModelInfo]:
        async with upstream_errors(self.cfg), self._pool.get(self.path("models")) as resp:
            if resp.status >= 300:
                raise await rejected(self.cfg, resp)
            raw = await resp.read()
        try:
            data: Any = orjson.loads(raw)
            return [ModelInfo(id=str(m["id"]), owned_by=self.name) for m in data["data"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UpstreamError(
                self.name,
                'returned a model list corral cannot read (expected {"data": [{"id": ...}]}).',
                code="upstream_bad_response",
            ) from None

    async def probe(self) -> Probe:
        got = await health_get(self.cfg, self._pool, self.path("health"))
        return got if isinstance(got, Probe) else Probe(ok=True, latency_ms=got[1])

    async def close(self) -> None:
        await self._pool.close()
