"""Ollama instances, remote Ollama and Ollama Cloud, spoken to in Ollama's native API.

OpenAI-shaped calls are translated to ``/api/chat``, ``/api/generate`` and ``/api/embed``
(``translate``) and the answers back (``responses``); NDJSON streams become SSE with one
stable id. Native calls keep ``keep_alive`` and ``num_ctx``, which Ollama's /v1 cannot carry.
Chat and generate always stream from Ollama (``aggregate`` folds them for non-stream
clients), so the first-token deadline and stall detection work for every call.

What is read is bounded by the provider's limits: a folded answer by ``max_response_bytes``
(counted over the NDJSON bytes), each stream line by ``max_line_bytes``, model lists and health
answers by ``upstream.LISTING_BYTES``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, Protocol

import orjson

from corral.config.schema import MAX_LINE_BYTES, ProviderConfig
from corral.core.call import Attempt, Call, Endpoint, ModelInfo, Outcome, Probe, Reply, Surface
from corral.errors import UpstreamError, UpstreamTimeout
from corral.httpclient import Pool, Response, TooLarge, TransportError
from corral.providers import model_path
from corral.providers.ollama import model, native, responses, translate
from corral.providers.ollama.aggregate import Aggregator
from corral.providers.upstream import (
    JSON_BODY,
    health_get,
    make_pool,
    read_listing,
    rejected,
    stream_failure,
    upstream_errors,
)

_PREFIX = {Endpoint.CHAT: "chatcmpl-", Endpoint.COMPLETION: "cmpl-", Endpoint.EMBEDDING: "embd-"}


class _StreamTranslator(Protocol):
    done: bool

    def feed(self, line: bytes) -> bytes: ...
    def finish(self) -> bytes: ...
    def error(self, message: str, code: str = ...) -> bytes: ...


class OllamaProvider:
    type = "ollama"
    speaks = frozenset({Surface.OLLAMA})

    def __init__(self, cfg: ProviderConfig, pool: Pool | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._pool = pool or make_pool(cfg)
        self._defaults = translate.OllamaDefaults(
            keep_alive=cfg.keep_alive, num_ctx=cfg.num_ctx, options=dict(cfg.options)
        )
        # Embedding models have their own context size: only keep_alive carries over to them.
        self._embed_defaults = translate.OllamaDefaults(keep_alive=cfg.keep_alive)
        self._paths = {
            Endpoint.CHAT: cfg.path("chat"),
            Endpoint.COMPLETION: cfg.path("generate"),
            Endpoint.EMBEDDING: cfg.path("embed"),
        }

    def _request(self, call: Call, attempt: Attempt) -> dict[str, Any]:
        body = call.body if attempt.num_ctx is None else {**call.body, "num_ctx": attempt.num_ctx}
        if call.endpoint is Endpoint.CHAT:
            return translate.chat_request(body, attempt.model, stream=True, defaults=self._defaults)
        if call.endpoint is Endpoint.COMPLETION:
            return translate.generate_request(body, attempt.model, stream=True, defaults=self._defaults)
        return translate.embed_request(call.body, attempt.model, defaults=self._embed_defaults)

    async def converse(self, call: Call, attempt: Attempt) -> Reply:
        """A call from a surface it does not speak: answered by ``send``, which translates it."""
        return await self.send(call, attempt)

    async def send(self, call: Call, attempt: Attempt) -> Reply:
        if call.surface is Surface.OLLAMA:
            return await native.send(self, call, attempt)
        if call.surface in model_path.MODEL_SURFACES:
            return await model.send(self, call, attempt)
        payload = orjson.dumps(self._request(call, attempt))
        first_by = (
            None if attempt.first_byte_timeout is None else time.monotonic() + attempt.first_byte_timeout
        )
        # A streamed call's first-token deadline is already enforced around this whole send by
        # the engine; a second timer here would only cost time.
        resp = await self.post(
            self._paths[call.endpoint], payload, None if call.stream else attempt.first_byte_timeout
        )
        request_id = _PREFIX[call.endpoint] + f"{random.getrandbits(96):024x}"  # an id, not a secret
        created = int(time.time())
        if call.endpoint is Endpoint.EMBEDDING:
            return self._embedding(call, await self.read(resp))
        if call.stream:
            options = call.body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            factory: Callable[..., _StreamTranslator] = (
                responses.ChatStreamTranslator if call.endpoint is Endpoint.CHAT
                else responses.CompletionStreamTranslator
            )  # fmt: skip
            translator = factory(
                request_id=request_id, model=call.model, created=created, include_usage=include_usage
            )
            reply = Reply(content_type="text/event-stream")
            reply.chunks = self._relay(resp, translator, reply.outcome)
            return reply
        remaining = None if first_by is None else max(0.001, first_by - time.monotonic())
        data = await self.aggregate(resp, remaining, call.endpoint is Endpoint.CHAT)
        usage = ollama_usage(data)
        if call.endpoint is Endpoint.CHAT:
            out = responses.chat_response(data, request_id=request_id, model=call.model, created=created)
        else:
            out = responses.completion_response(
                data, request_id=request_id, model=call.model, created=created
            )
        reply = Reply(body=orjson.dumps(out))
        reply.outcome.usage = usage
        return reply

    async def post(self, path: str, payload: bytes, first_byte_timeout: float | None) -> Response:
        """POST; a non-2xx answer raises. Ollama streams, so its headers come at once: the
        first-token deadline covers them too."""
        try:
            async with asyncio.timeout(first_byte_timeout), upstream_errors(self.cfg):
                resp = await self._pool.request("POST", path, payload, JSON_BODY)
        except TimeoutError:
            raise self._no_first_token(first_byte_timeout) from None
        if resp.status >= 300:
            raise await rejected(self.cfg, resp)
        return resp

    async def manage(self, method: str, path: str, payload: Any = None) -> Response:
        """A management call (show, pull, delete, copy) on this instance; the caller releases it."""
        data = None if payload is None else orjson.dumps(payload)
        async with upstream_errors(self.cfg):
            return await self._pool.request(method, path, data, JSON_BODY if data is not None else b"")

    def _no_first_token(self, seconds: float | None) -> UpstreamTimeout:
        return UpstreamTimeout(
            self.name, f"sent no first token within {seconds or 0:g} s.", code="first_token_timeout"
        )

    async def read(self, resp: Response) -> bytes:
        try:
            async with upstream_errors(self.cfg):
                return await resp.read()
        finally:
            resp.release()

    def _embedding(self, call: Call, raw: bytes) -> Reply:
        data = self.parse(raw)
        fmt = call.body.get("encoding_format")
        out = responses.embedding_response(
            data, model=call.model, encoding_format=fmt if isinstance(fmt, str) else None
        )
        return Reply(body=orjson.dumps(out))

    async def aggregate(self, resp: Response, first_timeout: float | None, chat: bool) -> dict[str, Any]:
        agg = Aggregator()
        try:
            async with upstream_errors(self.cfg):
                batches = ndjson_batches(
                    resp.chunks(), self.cfg.max_line_bytes, max_total=self.cfg.max_response_bytes
                )
                try:
                    async with asyncio.timeout(first_timeout):
                        lines: list[bytes] = await anext(batches, [])
                except TimeoutError:
                    raise self._no_first_token(first_timeout) from None
                while lines and not self._fold(agg, lines):
                    lines = await anext(batches, [])
            if agg.done:
                # The client may send its next request as soon as it has this answer: have the
                # connection back in the pool first (its end marker is a moment behind).
                await resp.settle()
        finally:
            if agg.done:
                resp.release()
            else:
                resp.close()
        if agg.error is not None:
            raise UpstreamError(self.name, f"reported an error: {agg.error[:500]}", code="upstream_error")
        if not agg.done:
            raise UpstreamError(
                self.name, "ended its answer before the final chunk.", code="upstream_incomplete"
            )
        return agg.result(chat)

    def _fold(self, agg: Aggregator, lines: list[bytes]) -> bool:
        """Add lines to ``agg``; True once it has the final line (or an error)."""
        for line in lines:
            agg.add(self.parse(line))
            if agg.done:
                return True
        return False

    def parse(self, raw: bytes) -> dict[str, Any]:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise UpstreamError(
                self.name, "returned a body that is not a JSON object.", code="upstream_bad_response"
            )
        if isinstance(data.get("error"), str) and "done" not in data:
            raise UpstreamError(self.name, f"reported an error: {data['error'][:500]}", code="upstream_error")
        return data

    async def _relay(
        self, resp: Response, translator: _StreamTranslator, outcome: Outcome
    ) -> AsyncIterator[bytes]:
        sent = False
        try:
            try:
                # One write per network read, not per token: a fast upstream's burst of lines
                # becomes one SSE write (with the closing events, when the answer ends in it);
                # a real model's tokens still go out as they arrive.
                async for lines in ndjson_batches(resp.chunks(), self.cfg.max_line_bytes):
                    parts: list[bytes] = []
                    for line in lines:
                        if not sent and not parts and line.startswith(b'{"error"'):
                            # Raises: nothing reached the client, so the engine may fail over.
                            self.parse(line)
                        out = translator.feed(line)
                        if out:
                            parts.append(out)
                        if translator.done:
                            parts.append(self._finish(translator, outcome))
                            break
                    if parts:
                        sent = True
                        if translator.done:
                            # The client may send its next request as soon as it has this last
                            # chunk: have the connection back in the pool first (its end marker
                            # is a moment behind), then the last chunk goes with the end marker.
                            await resp.settle()
                            outcome.ended = True
                        yield b"".join(parts)
                    if translator.done:
                        return
            except (TransportError, TimeoutError, ValueError) as exc:
                failure = stream_failure(self.cfg, exc, started=sent)
                if not sent:  # nothing reached the client: fail over instead
                    raise failure from None
                outcome.error = failure.message
                yield translator.error(outcome.error, failure.code or "upstream_stream_interrupted")
                return
            if not sent:
                raise UpstreamError(
                    self.name, "ended the stream before its first token.", code="upstream_stream_interrupted"
                )
            outcome.error = f"Upstream '{self.name}' ended the stream early; the answer is incomplete."
            yield translator.error(outcome.error, "upstream_stream_interrupted")
        finally:
            # Ended well: the connection is kept once the rest of the body (its final chunk
            # marker) arrives. Cut short (client gone, error): the connection is closed.
            if translator.done:
                resp.release()
            else:
                resp.close()

    def _finish(self, translator: _StreamTranslator, outcome: Outcome) -> bytes:
        """The closing events of a stream that ended well; notes its usage (or final error)."""
        outcome.usage = getattr(translator, "usage", None)
        tail = translator.finish()
        if b'"error"' in tail[:16]:
            outcome.error = f"Upstream '{self.name}' reported an error mid-stream."
        return tail

    async def list_models(self) -> list[ModelInfo]:
        async with upstream_errors(self.cfg), self._pool.get(self.cfg.path("models")) as resp:
            if resp.status >= 300:
                raise await rejected(self.cfg, resp)
            raw = await read_listing(self.cfg, resp)
        try:
            data: Any = orjson.loads(raw)
            return [_model_info(m, self.name) for m in data["models"]]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise UpstreamError(
                self.name,
                "returned a model list corral cannot read (expected Ollama's /api/tags shape).",
                code="upstream_bad_response",
            ) from None

    async def probe(self) -> Probe:
        """GET the version (alive) and /api/ps (which models are loaded, at which context)."""
        got = await health_get(self.cfg, self._pool, self.cfg.path("health"))
        if isinstance(got, Probe):
            return got
        raw, latency = got
        try:
            async with upstream_errors(self.cfg):
                running = await self._running()
        except UpstreamError as exc:
            return Probe(ok=False, latency_ms=latency, error=exc.message)
        loaded = None if running is None else {str(m.get("name")): m.get("context_length") for m in running}
        return Probe(ok=True, latency_ms=latency, loaded=loaded, running=running, version=_version(raw))

    async def _running(self) -> tuple[dict[str, Any], ...] | None:
        async with self._pool.get(self.cfg.path("loaded")) as resp:
            if resp.status != 200:
                return None  # Ollama Cloud and old servers may not list loaded models
            raw = await read_listing(self.cfg, resp)
        try:
            data: Any = orjson.loads(raw)
            return tuple(m for m in data.get("models") or [] if isinstance(m, dict) and m.get("name"))
        except (orjson.JSONDecodeError, AttributeError):
            return None

    async def close(self) -> None:
        await self._pool.close()


async def ndjson_batches(
    content: AsyncIterable[bytes], max_line: int = MAX_LINE_BYTES, *, max_total: int | None = None
) -> AsyncIterator[list[bytes]]:
    """The complete, non-empty lines of each network read; a partial line waits for the next.
    A line over ``max_line`` bytes, or more than ``max_total`` bytes in all, raises ``TooLarge``
    as soon as it is seen, after the lines before it (the caller closes the answer): one endless
    line is not gathered."""
    pending: list[bytes] = []  # the pieces of a line not ended yet
    held = 0  # their length
    total = 0
    async for data in content:
        total += len(data)
        if max_total is not None and total > max_total:
            raise TooLarge("an answer", max_total)
        if b"\n" not in data:
            held += len(data)
            if held > max_line:
                raise TooLarge("a stream line", max_line)
            pending.append(data)
            continue
        if pending:
            pending.append(data)
            data = b"".join(pending)
        *lines, rest = data.split(b"\n")
        batch = []
        over = len(rest) > max_line
        for line in lines:
            if len(line) > max_line:
                over = True
                break
            if line.strip():
                batch.append(line)
        if batch:
            yield batch
        if over:
            raise TooLarge("a stream line", max_line)
        pending = [rest] if rest else []
        held = len(rest)
    last = b"".join(pending)
    if last.strip():
        yield [last]


def ollama_usage(data: dict[str, Any]) -> dict[str, int]:
    """Token counts from an Ollama answer (its final chunk)."""
    prompt, completion = data.get("prompt_eval_count"), data.get("eval_count")
    return {
        "prompt_tokens": prompt if isinstance(prompt, int) else 0,
        "completion_tokens": completion if isinstance(completion, int) else 0,
    }


def _version(raw: bytes) -> str | None:
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def _model_info(entry: dict[str, Any], owner: str) -> ModelInfo:
    name = str(entry.get("name") or entry["model"])
    details: dict[str, Any] = {
        k: entry[k] for k in ("digest", "size", "details", "capabilities", "modified_at") if k in entry
    }
    return ModelInfo(id=name, created=0, owned_by=owner, details=details)
