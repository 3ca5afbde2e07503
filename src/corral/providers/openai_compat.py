"""Any OpenAI-compatible server (vLLM, OpenAI, Groq, Mistral, OpenRouter, Ollama's /v1).

Forwards bytes: only the model name (and auth, set on the session) is rewritten, streams are
relayed chunk by chunk without buffering, and upstream fields corral does not know are kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from corral.config.schema import ProviderConfig
from corral.core.body import sse_error, with_model
from corral.core.call import Attempt, Call, Endpoint, ModelInfo, Outcome, Probe, Reply, Surface
from corral.errors import UpstreamError
from corral.httpclient import Pool, Response, TransportError
from corral.providers import model_path, openai_model
from corral.providers.openai_native import bridge
from corral.providers.upstream import (
    JSON_BODY,
    error_detail,
    health_get,
    make_pool,
    rejected,
    upstream_errors,
)

_PATH_KEYS = {Endpoint.CHAT: "chat", Endpoint.COMPLETION: "completions", Endpoint.EMBEDDING: "embeddings"}
_ERROR_EVENT = b'data: {"error"'


def _event(chunk: bytes) -> bytes:
    """The JSON of the first error event in ``chunk``."""
    start = chunk.index(_ERROR_EVENT) + len(b"data: ")
    end = chunk.find(b"\n", start)
    return chunk[start:] if end < 0 else chunk[start:end]


class OpenAIProvider:
    type = "openai"

    def __init__(self, cfg: ProviderConfig, pool: Pool | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._pool = pool or make_pool(cfg)
        self._paths = {ep: cfg.path(key) for ep, key in _PATH_KEYS.items()}

    async def send(self, call: Call, attempt: Attempt) -> Reply:
        if call.surface in model_path.MODEL_SURFACES:
            return await openai_model.send(self, call, attempt, self._paths[Endpoint.CHAT])
        if call.surface is Surface.OLLAMA:
            started = bridge.now_ns()
            return bridge.to_native(
                await self.send(bridge.to_openai(call, attempt.model), attempt), call, started
            )
        data = with_model(call.raw, call.body, attempt.model)
        async with upstream_errors(self.cfg):
            resp = await self._pool.request("POST", self._paths[call.endpoint], data, JSON_BODY)
        if resp.status >= 300:
            raise await rejected(self.cfg, resp)
        content_type = resp.headers.get("content-type", "application/json")
        if call.stream and content_type.startswith("text/event-stream"):
            reply = Reply(status=resp.status, content_type="text/event-stream")
            reply.chunks = self._relay(resp, reply.outcome)
            return reply
        try:
            async with upstream_errors(self.cfg):
                body = await resp.read()
        finally:
            resp.release()
        reply = Reply(status=resp.status, body=body, content_type=content_type.split(";")[0])
        reply.outcome.tail = body
        return reply

    async def _relay(self, resp: Response, outcome: Outcome) -> AsyncIterator[bytes]:
        first = True
        try:
            try:
                async for chunk in resp.chunks():
                    if _ERROR_EVENT in chunk:
                        if first:  # nothing reached the client yet: let the engine fail over
                            raise UpstreamError(
                                self.name,
                                f"sent an error event: {error_detail(_event(chunk))}",
                                code="upstream_error",
                            )
                        outcome.error = f"Upstream '{self.name}' sent an error event mid-stream."
                    first = False
                    outcome.tail = (outcome.tail + chunk)[-4096:]
                    outcome.ended = resp.complete
                    yield chunk
            except (TransportError, TimeoutError) as exc:
                detail = "timed out" if isinstance(exc, TimeoutError) else "broke the connection"
                if first:  # nothing reached the client: fail over instead
                    raise UpstreamError(
                        self.name, f"{detail} before its first chunk.", code="upstream_stream_interrupted"
                    ) from None
                outcome.error = f"Upstream '{self.name}' {detail} mid-stream; the answer is incomplete."
                yield b"\n\n" + sse_error(outcome.error, code="upstream_stream_interrupted")
        finally:
            resp.close()  # read to its end: a no-op; cut short (client gone): the connection goes

    async def list_models(self) -> list[ModelInfo]:
        async with upstream_errors(self.cfg), self._pool.get(self.cfg.path("models")) as resp:
            if resp.status >= 300:
                raise await rejected(self.cfg, resp)
            raw = await resp.read()
        try:
            data: Any = orjson.loads(raw)
            items = data["data"]
            return [
                ModelInfo(
                    id=str(m["id"]), created=int(m.get("created") or 0), owned_by=str(m.get("owned_by") or "")
                )
                for m in items
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UpstreamError(
                self.name,
                'returned a model list corral cannot read (expected {"data": [{"id": ...}]}).',
                code="upstream_bad_response",
            ) from None

    async def probe(self) -> Probe:
        got = await health_get(self.cfg, self._pool, self.cfg.path("health"))
        return got if isinstance(got, Probe) else Probe(ok=True, latency_ms=got[1])

    async def close(self) -> None:
        await self._pool.close()
