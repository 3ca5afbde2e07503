"""The built-in ``demo`` provider: deterministic answers with no upstream at all.

Model ``demo/echo`` repeats the last user message ("Echo: ..."), streamed word by word.
It lets a new user see a full round trip without Ollama, and gives benchmarks a
zero-latency upstream to measure the gateway alone. It answers OpenAI clients in OpenAI's API
(``send``) and every other surface through the conversation model (``converse``).
"""

from __future__ import annotations

import base64
import hashlib
import random
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from corral.conversation.answer import Answer, Delta, Embeddings, Event, Finish, FinishReason, Usage
from corral.conversation.call import Attempt, Call, Endpoint, ModelInfo, Probe, Reply, Surface
from corral.conversation.openai.answers import usage_dict
from corral.conversation.surfaces import reply_of, request_of
from corral.errors import InvalidRequest, NotFound

MODELS = ("echo",)


def _last_user_text(body: dict[str, Any]) -> str:
    if "prompt" in body:
        prompt = body["prompt"]
        return prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(_part_texts(content, f"messages[{i}].content"))
            return str(content or "")
    return ""


def _part_texts(parts: list[Any], where: str) -> list[str]:
    """The text of each content part (image parts have none); a 400 naming a part of the wrong type."""
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise InvalidRequest(
                f'{where}[{j}] must be a content part object such as {{"type": "text", "text": "..."}}.',
                param=f"{where}[{j}]",
            )
        text = part.get("text", "")
        if not isinstance(text, str):
            raise InvalidRequest(f"{where}[{j}].text must be a string.", param=f"{where}[{j}].text")
        texts.append(text)
    return texts


def _usage(prompt: str, words: list[str]) -> Usage:
    return Usage(max(1, len(prompt.split())), len(words))


def _words(prompt: str, limit: int | None) -> tuple[list[str], FinishReason]:
    """The answer's words ("Echo: " and the prompt), cut at ``limit`` when it is shorter."""
    words = f"Echo: {prompt}".split(" ")
    if limit is not None and 0 < limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in digest[:8]]


def _check(model: str) -> None:
    if model not in MODELS:
        raise NotFound(
            f"The demo provider has only these models: {', '.join('demo/' + m for m in MODELS)}.",
            code="model_not_found",
            param="model",
        )


async def _once(events: list[Event]) -> AsyncIterator[list[Event]]:
    yield events


class DemoProvider:
    type = "demo"
    speaks = frozenset({Surface.OPENAI})

    def __init__(self, name: str = "demo") -> None:
        self.name = name

    async def converse(self, call: Call, attempt: Attempt) -> Reply:
        """Any other surface's call: the same answers, made in the conversation model."""
        _check(attempt.model)
        started = time.monotonic_ns()
        req = request_of(call)
        if req.endpoint in (Endpoint.EMBEDDING, Endpoint.LEGACY_EMBEDDING):
            inputs = [req.input] if isinstance(req.input, str) else list(req.input or [])
            tokens = sum(len(t.split()) for t in inputs)
            return reply_of(call, Embeddings([_vector(t) for t in inputs], tokens), started)
        if req.endpoint is Endpoint.COMPLETION:
            prompt = req.prompt or ""
        else:
            users = [m for m in req.messages if m.role == "user"]
            prompt = users[-1].text(" ") if users else ""
        words, finish = _words(prompt, req.sampling.max_tokens)
        usage = _usage(prompt, words)
        if not req.stream:
            return reply_of(call, Answer(" ".join(words), finish=finish, usage=usage), started)
        events: list[Event] = [Delta(w if i == 0 else " " + w) for i, w in enumerate(words)]
        events.append(Finish(finish, usage))
        return reply_of(call, _once(events), started)

    async def send(self, call: Call, attempt: Attempt) -> Reply:
        """An OpenAI client's call, answered in OpenAI's API directly."""
        _check(attempt.model)
        if call.endpoint is Endpoint.EMBEDDING:
            return Reply(body=orjson.dumps(self._embeddings(call)))
        prompt = _last_user_text(call.body)
        limit = call.body.get("max_tokens") or call.body.get("max_completion_tokens")
        words, finish = _words(prompt, limit if isinstance(limit, int) else None)
        request_id = (
            "chatcmpl-" if call.endpoint is Endpoint.CHAT else "cmpl-"
        ) + f"{random.getrandbits(96):024x}"
        if call.stream:
            reply = Reply(
                chunks=self._stream(call, request_id, prompt, words, finish), content_type="text/event-stream"
            )
            reply.outcome.usage = _usage(prompt, words)
            return reply
        text = " ".join(words)
        usage = _usage(prompt, words)
        if call.endpoint is Endpoint.CHAT:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish,
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        reply = Reply(
            body=orjson.dumps(
                {
                    "id": request_id,
                    "object": obj,
                    "created": int(time.time()),
                    "model": call.model,
                    "choices": [choice],
                    "usage": usage_dict(usage),
                }
            )
        )
        reply.outcome.usage = usage
        return reply

    async def _stream(
        self, call: Call, request_id: str, prompt: str, words: list[str], finish: str
    ) -> AsyncIterator[bytes]:
        created = int(time.time())
        chat = call.endpoint is Endpoint.CHAT
        obj = "chat.completion.chunk" if chat else "text_completion"
        options = call.body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True

        def event(choice: dict[str, Any] | None, usage: dict[str, int] | None = None) -> bytes:
            chunk: dict[str, Any] = {
                "id": request_id,
                "object": obj,
                "created": created,
                "model": call.model,
                "choices": [choice] if choice else [],
            }
            if include_usage:
                chunk["usage"] = usage
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            if chat:
                delta: dict[str, Any] = {"content": piece}
                if i == 0:
                    delta["role"] = "assistant"
                yield event({"index": 0, "delta": delta, "logprobs": None, "finish_reason": None})
            else:
                yield event({"index": 0, "text": piece, "logprobs": None, "finish_reason": None})
        final: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
        if chat:
            final["delta"] = {}
        else:
            final["text"] = ""
        yield event(final)
        if include_usage:
            yield event(None, usage_dict(_usage(prompt, words)))
        yield b"data: [DONE]\n\n"

    def _embeddings(self, call: Call) -> dict[str, Any]:
        raw = call.body.get("input")
        inputs = [raw] if isinstance(raw, str) else list(raw or [])
        data = []
        for i, text in enumerate(inputs):
            vector = _vector(str(text))
            embedding: Any = vector
            if call.body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        tokens = sum(len(str(t).split()) for t in inputs)
        return {
            "object": "list",
            "data": data,
            "model": call.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id=m, owned_by=self.name) for m in MODELS]

    async def probe(self) -> Probe:
        return Probe(ok=True, latency_ms=0.0)

    async def close(self) -> None:
        return None
