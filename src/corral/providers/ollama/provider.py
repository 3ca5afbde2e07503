"""Ollama instances, remote Ollama and Ollama Cloud, spoken to in Ollama's native API.

OpenAI-shaped calls are translated to ``/api/chat``, ``/api/generate`` and ``/api/embed``
(``translate``) and the answers back (``responses``); NDJSON streams become SSE with one
stable id. Native calls keep ``keep_alive`` and ``num_ctx``, which Ollama's /v1 cannot carry.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp
import orjson

from corral.config.schema import ProviderConfig
from corral.core.call import Call, Endpoint, ModelInfo, Reply
from corral.errors import UpstreamError
from corral.providers.ollama import responses, translate
from corral.providers.upstream import make_session, rejected, upstream_errors

_JSON = {"Content-Type": "application/json"}
_PREFIX = {Endpoint.CHAT: "chatcmpl-", Endpoint.COMPLETION: "cmpl-", Endpoint.EMBEDDING: "embd-"}


class _StreamTranslator(Protocol):
    done: bool

    def feed(self, line: bytes) -> bytes: ...
    def finish(self) -> bytes: ...
    def error(self, message: str, code: str = ...) -> bytes: ...


class OllamaProvider:
    type = "ollama"

    def __init__(self, cfg: ProviderConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._session = session or make_session(cfg)
        self._defaults = translate.OllamaDefaults(
            keep_alive=cfg.keep_alive, num_ctx=cfg.num_ctx, options=dict(cfg.options)
        )
        # Embedding models have their own context size: only keep_alive carries over to them.
        self._embed_defaults = translate.OllamaDefaults(keep_alive=cfg.keep_alive)
        base = cfg.base_url
        self._urls = {
            Endpoint.CHAT: base + cfg.path("chat"),
            Endpoint.COMPLETION: base + cfg.path("generate"),
            Endpoint.EMBEDDING: base + cfg.path("embed"),
        }
        self._tags_url = base + cfg.path("models")

    def _request(self, call: Call, model: str) -> dict[str, Any]:
        if call.endpoint is Endpoint.CHAT:
            return translate.chat_request(call.body, model, stream=call.stream, defaults=self._defaults)
        if call.endpoint is Endpoint.COMPLETION:
            return translate.generate_request(call.body, model, stream=call.stream, defaults=self._defaults)
        return translate.embed_request(call.body, model, defaults=self._embed_defaults)

    async def send(self, call: Call, model: str) -> Reply:
        payload = orjson.dumps(self._request(call, model))
        async with upstream_errors(self.cfg):
            resp = await self._session.post(self._urls[call.endpoint], data=payload, headers=_JSON)
        if resp.status >= 400:
            try:
                raise await rejected(self.cfg, resp)
            finally:
                resp.release()
        request_id = _PREFIX[call.endpoint] + secrets.token_hex(12)
        created = int(time.time())
        if call.stream and call.endpoint is not Endpoint.EMBEDDING:
            options = call.body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            factory: Callable[..., _StreamTranslator] = (
                responses.ChatStreamTranslator
                if call.endpoint is Endpoint.CHAT
                else responses.CompletionStreamTranslator
            )
            translator = factory(
                request_id=request_id, model=call.model, created=created, include_usage=include_usage
            )
            return Reply(chunks=self._relay(resp, translator), content_type="text/event-stream")
        try:
            async with upstream_errors(self.cfg):
                raw = await resp.read()
        finally:
            resp.release()
        data = self._parse(raw)
        if call.endpoint is Endpoint.CHAT:
            out = responses.chat_response(data, request_id=request_id, model=call.model, created=created)
        elif call.endpoint is Endpoint.COMPLETION:
            out = responses.completion_response(
                data, request_id=request_id, model=call.model, created=created
            )
        else:
            fmt = call.body.get("encoding_format")
            out = responses.embedding_response(
                data, model=call.model, encoding_format=fmt if isinstance(fmt, str) else None
            )
        return Reply(body=orjson.dumps(out))

    def _parse(self, raw: bytes) -> dict[str, Any]:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise UpstreamError(
                self.name, "returned a body that is not a JSON object.", code="upstream_bad_response"
            )
        if isinstance(data.get("error"), str):
            raise UpstreamError(self.name, f"reported an error: {data['error'][:500]}", code="upstream_error")
        return data

    async def _relay(
        self, resp: aiohttp.ClientResponse, translator: _StreamTranslator
    ) -> AsyncIterator[bytes]:
        complete = False
        try:
            try:
                async for line in resp.content:
                    out = translator.feed(line)
                    if out:
                        yield out
                    if translator.done:
                        break
                complete = True
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                detail = (
                    "timed out" if isinstance(exc, TimeoutError) else f"failed ({exc.__class__.__name__})"
                )
                yield translator.error(
                    f"Upstream '{self.name}' {detail} mid-stream; the answer is incomplete.",
                    "upstream_stream_interrupted",
                )
                return
            if not translator.done:
                yield translator.error(
                    f"Upstream '{self.name}' ended the stream before its final chunk; "
                    "the answer is incomplete.",
                    "upstream_stream_interrupted",
                )
                return
            tail = translator.finish()
            if tail:
                yield tail
        finally:
            if complete:
                resp.release()
            else:
                resp.close()

    async def list_models(self) -> list[ModelInfo]:
        async with upstream_errors(self.cfg), self._session.get(self._tags_url) as resp:
            if resp.status >= 400:
                raise await rejected(self.cfg, resp)
            raw = await resp.read()
        try:
            data: Any = orjson.loads(raw)
            return [_model_info(m, self.name) for m in data["models"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UpstreamError(
                self.name,
                "returned a model list corral cannot read (expected Ollama's /api/tags shape).",
                code="upstream_bad_response",
            ) from None

    async def close(self) -> None:
        await self._session.close()


def _model_info(entry: dict[str, Any], owner: str) -> ModelInfo:
    name = str(entry.get("name") or entry["model"])
    details: dict[str, Any] = {
        k: entry[k] for k in ("digest", "size", "details", "capabilities", "modified_at") if k in entry
    }
    return ModelInfo(id=name, created=0, owned_by=owner, details=details)
