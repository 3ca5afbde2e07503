"""Ollama instances, remote Ollama and Ollama Cloud, spoken to in Ollama's native API.

An Ollama client's call is passed through (``native``); a call from any other surface goes
through the conversation model (``model``) to ``/api/chat``, ``/api/generate`` or ``/api/embed``,
which carry ``keep_alive`` and ``num_ctx`` as Ollama's OpenAI-compatible endpoints cannot. Chat
and generate always stream from Ollama (``aggregate`` folds them for non-stream clients), so the
first-token deadline and stall detection work for every call.

What is read is bounded by the provider's limits: a folded answer by ``max_response_bytes``
(counted over the NDJSON bytes), each stream line by ``max_line_bytes``, model lists and health
answers by ``upstream.LISTING_BYTES``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson

from corral.config.schema import MAX_LINE_BYTES, ProviderConfig
from corral.conversation.call import Attempt, Call, ModelInfo, Probe, Reply, Surface
from corral.errors import UpstreamError
from corral.httpclient import Pool, Response, TooLarge
from corral.providers.ollama import model, native
from corral.providers.ollama.aggregate import Aggregator
from corral.providers.upstream import (
    JSON_BODY,
    health_get,
    incomplete,
    json_object,
    make_pool,
    no_first_token,
    read_listing,
    rejected,
    upstream_errors,
)


class OllamaProvider:
    type = "ollama"
    speaks = frozenset({Surface.OLLAMA})

    def __init__(self, cfg: ProviderConfig, pool: Pool | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._pool = pool or make_pool(cfg)
        self.defaults = model.defaults(cfg)  # what requests through the model get under their own

    async def converse(self, call: Call, attempt: Attempt) -> Reply:
        """Any other surface's call, through the conversation model (``model``)."""
        return await model.send(self, call, attempt)

    async def send(self, call: Call, attempt: Attempt) -> Reply:
        """An Ollama client's call, passed through (``native``)."""
        return await native.send(self, call, attempt)

    async def post(self, path: str, payload: bytes, first_byte_timeout: float | None) -> Response:
        """POST; a non-2xx answer raises. Ollama streams, so its headers come at once: the
        first-token deadline covers them too."""
        try:
            async with asyncio.timeout(first_byte_timeout), upstream_errors(self.cfg):
                resp = await self._pool.request("POST", path, payload, JSON_BODY)
        except TimeoutError:
            raise no_first_token(self.cfg, first_byte_timeout) from None
        if resp.status >= 300:
            raise await rejected(self.cfg, resp)
        return resp

    async def manage(self, method: str, path: str, payload: Any = None) -> Response:
        """A management call (show, pull, delete, copy) on this instance; the caller releases it."""
        data = None if payload is None else orjson.dumps(payload)
        async with upstream_errors(self.cfg):
            return await self._pool.request(method, path, data, JSON_BODY if data is not None else b"")

    async def read(self, resp: Response) -> bytes:
        try:
            async with upstream_errors(self.cfg):
                return await resp.read()
        finally:
            resp.release()

    async def aggregate(
        self, resp: Response, first_timeout: float | None, chat: bool
    ) -> tuple[dict[str, Any], float]:
        """The stream of ``resp`` folded into one answer, and the monotonic time its first line came."""
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
                    raise no_first_token(self.cfg, first_timeout) from None
                first_at = time.monotonic()
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
            raise incomplete(self.name)
        return agg.result(chat), first_at

    def _fold(self, agg: Aggregator, lines: list[bytes]) -> bool:
        """Add lines to ``agg``; True once it has the final line (or an error)."""
        for line in lines:
            agg.add(self.parse(line))
            if agg.done:
                return True
        return False

    def parse(self, raw: bytes) -> dict[str, Any]:
        data = json_object(self.name, raw)
        if isinstance(data.get("error"), str) and "done" not in data:
            raise UpstreamError(self.name, f"reported an error: {data['error'][:500]}", code="upstream_error")
        return data

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
