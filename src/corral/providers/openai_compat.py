"""Any OpenAI-compatible server (vLLM, OpenAI, Groq, Mistral, OpenRouter, Ollama's /v1).

An OpenAI client's call is passed through (``openai_relay``): the body as corral read it with the
routed model, the answer's bytes relayed as they come, upstream fields corral does not know
kept. A provider that declares other APIs its server answers itself (``surfaces: [messages,
responses]``: vLLM >= 0.11.1, Ollama's ``/v1``, hosted APIs) passes their calls through too, the
body changed only in its model, the answer relayed as it comes (``native_relay``). Any other
surface's call goes through the conversation model (``openai_model``). A non-streamed chat or
completions call is streamed from the server and folded (``openai_fold``) when another
deployment could still be tried after this one, so the first-token deadline catches a server
that hangs before its first token; the last one left is asked for the whole answer. A whole answer is read up
to ``max_response_bytes``; a stream is relayed in whole SSE events (``upstream.Framer``), none of
which may grow past ``max_line_bytes``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from corral.config.schema import ProviderConfig
from corral.conversation.body import with_model
from corral.conversation.call import Attempt, Call, Endpoint, ModelInfo, Probe, Reply, Surface
from corral.errors import UpstreamError, UpstreamRejected
from corral.httpclient import Pool, Response
from corral.providers import native_relay, openai_fold, openai_model, openai_relay
from corral.providers.passthrough import Renamer, note_whole
from corral.providers.upstream import (
    JSON_BODY,
    health_get,
    make_pool,
    no_first_token,
    read_listing,
    rejected,
    upstream_errors,
)

_PATH_KEYS = {Endpoint.CHAT: "chat", Endpoint.COMPLETION: "completions", Endpoint.EMBEDDING: "embeddings"}


_FOLDED = frozenset({Endpoint.CHAT, Endpoint.COMPLETION})  # whole answers streamed and folded
_STREAM_REFUSED = frozenset({400, 422})  # a streamed request refused: the same call is asked whole
_MAX_UNSTREAMED = 1024
_SURFACES = {"messages": Surface.MESSAGES, "responses": Surface.RESPONSES}  # config name -> surface


class OpenAIProvider:
    type = "openai"

    def __init__(self, cfg: ProviderConfig, pool: Pool | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.pool = pool or make_pool(cfg)
        self.paths = {ep: cfg.path(key) for ep, key in _PATH_KEYS.items()}
        native = {_SURFACES[name]: cfg.path(name) for name in cfg.surfaces}
        self._native = native  # surface -> its path on the upstream
        self.speaks = frozenset({Surface.OPENAI, *native})
        self._unstreamed: set[str] = set()  # models that refused a streamed whole-answer call

    @property
    def _pool(self) -> Pool:
        return self.pool

    async def converse(self, call: Call, attempt: Attempt) -> Reply:
        """Any other surface's call, through the conversation model (``openai_model``)."""
        return await openai_model.send(self, call, attempt)

    async def send(self, call: Call, attempt: Attempt) -> Reply:
        """An OpenAI client's call, passed through (``openai_relay``); a call of a surface the
        server declares it speaks, passed through as it is (``native_relay``)."""
        if call.surface is not Surface.OPENAI:
            return await self._send_native(call, attempt)
        if self.folds(call, attempt):
            try:
                return await self._folded(call, attempt)
            except UpstreamRejected as exc:
                if exc.upstream_status not in _STREAM_REFUSED:
                    raise
            reply = await self._answer(call, attempt)  # the same call, asked whole
            self._unstreamed.add(attempt.model)  # it answers whole what it refused to stream
            return reply
        return await self._answer(call, attempt)

    async def _answer(self, call: Call, attempt: Attempt) -> Reply:
        """An OpenAI client's call passed through as it came."""
        data, asked_usage = openai_relay.forwarded(call, attempt.model)
        async with upstream_errors(self.cfg):
            resp = await self.pool.request("POST", self.paths[call.endpoint], data, JSON_BODY)
        if resp.status >= 300:
            raise await rejected(self.cfg, resp)
        content_type = resp.headers.get("content-type", "application/json")
        if call.stream and content_type.startswith("text/event-stream"):
            reply = Reply(status=resp.status, content_type="text/event-stream")
            reply.chunks = openai_relay.relay(
                self.cfg, resp, reply.outcome, call.model, asked_usage, served=attempt.model
            )
            return reply
        reply, body = await self._whole(resp, call, attempt, content_type)
        note_whole(body, reply.outcome)
        return reply

    def folds(self, call: Call, attempt: Attempt) -> bool:
        """Stream a whole answer to fold it: a chat or completions call, with another deployment
        left to fail over to, to a model that has not refused to stream (OpenAI refuses it for
        some models and organisations, completions refuse it with ``best_of``)."""
        if call.stream or call.endpoint not in _FOLDED or not attempt.elsewhere or "best_of" in call.body:
            return False
        if attempt.model in self._unstreamed:
            return False
        if len(self._unstreamed) >= _MAX_UNSTREAMED:
            self._unstreamed.clear()
        return True

    async def _folded(self, call: Call, attempt: Attempt) -> Reply:
        """A whole chat or completions answer, streamed from the server and folded (``openai_fold``)
        so that the first-token deadline covers it."""
        timeout = attempt.first_byte_timeout
        first_by = None if timeout is None else asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(first_by):
                async with upstream_errors(self.cfg):
                    data = openai_fold.forwarded(call, attempt.model)
                    resp = await self.pool.request("POST", self.paths[call.endpoint], data, JSON_BODY)
                if resp.status >= 300:
                    raise await rejected(self.cfg, resp)
        except TimeoutError:
            raise no_first_token(self.cfg, timeout) from None
        content_type = resp.headers.get("content-type", "application/json")
        if not content_type.startswith("text/event-stream"):  # the server would not stream
            reply, body = await self._whole(resp, call, attempt, content_type)
            note_whole(body, reply.outcome)
            return reply
        folded = await openai_fold.fold(
            self.cfg, resp, first_by, timeout, chat=call.endpoint is Endpoint.CHAT
        )
        reply = Reply(
            status=200, body=orjson.dumps(folded.answer(call.model)), content_type="application/json"
        )
        openai_fold.note(folded, reply.outcome)
        return reply

    async def _whole(
        self, resp: Response, call: Call, attempt: Attempt, content_type: str
    ) -> tuple[Reply, bytes]:
        """A whole answer passed through: read within the limits, the client's model name in it."""
        try:
            async with upstream_errors(self.cfg):
                body = await resp.read()
        finally:
            resp.release()
        renamed = Renamer(call.model, attempt.model)(body)
        return Reply(status=resp.status, body=renamed, content_type=content_type.split(";")[0]), body

    async def _send_native(self, call: Call, attempt: Attempt) -> Reply:
        data = with_model(call.raw, call.body, attempt.model)
        async with upstream_errors(self.cfg):
            resp = await self.pool.request("POST", self._native[call.surface], data, JSON_BODY)
        if resp.status >= 300:
            raise await rejected(self.cfg, resp)
        content_type = resp.headers.get("content-type", "application/json")
        if call.stream and content_type.startswith("text/event-stream"):
            reply = Reply(status=resp.status, content_type="text/event-stream")
            dialect = native_relay.DIALECTS[call.surface]
            reply.chunks = native_relay.relay(
                self.cfg, resp, reply.outcome, call.model, dialect, attempt.model
            )
            return reply
        reply, body = await self._whole(resp, call, attempt, content_type)
        native_relay.note_whole(call.surface, body, reply.outcome)
        return reply

    async def list_models(self) -> list[ModelInfo]:
        async with upstream_errors(self.cfg), self._pool.get(self.cfg.path("models")) as resp:
            if resp.status >= 300:
                raise await rejected(self.cfg, resp)
            raw = await read_listing(self.cfg, resp)
        try:
            data: Any = orjson.loads(raw)
            items = data["data"]
            return [
                ModelInfo(
                    id=str(m["id"]),
                    created=int(m.get("created") or 0),
                    owned_by=str(m.get("owned_by") or ""),
                    details=_metadata(m),
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


def _metadata(entry: dict[str, Any]) -> dict[str, Any]:
    """What a /v1/models entry says about the model beyond its name: vLLM's ``max_model_len``
    (its context length), kept for capability and context-aware routing."""
    value = entry.get("max_model_len")
    return {"max_model_len": value} if isinstance(value, int) and not isinstance(value, bool) else {}
