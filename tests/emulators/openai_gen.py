"""Deterministic generation for the OpenAI emulator: chat.completion(.chunk) and text_completion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.emulators.common import (
    call_id,
    dumps,
    echo_text,
    requested_tools,
    tokens,
    tool_arguments,
    word_count,
)


@dataclass
class Completion:
    """What one request produces."""

    content: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0

    @property
    def completion_tokens(self) -> int:
        return len(self.content) + len(self.tool_calls)

    def usage(self) -> dict[str, int]:
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": total}  # fmt: skip


def content_text(content: Any) -> tuple[str, int]:
    """(text, image count) of a message content: a string or a list of content parts."""
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        return "", 0
    texts = [str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"]
    images = sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
    return " ".join(texts), images


def _limit(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return value if isinstance(value, int) and value > 0 else None


def _truncate(result: Completion, limit: int | None) -> Completion:
    if limit is not None and len(result.content) > limit:
        result.content = result.content[:limit]
        result.finish_reason = "length"
    return result


def plan_chat(body: dict[str, Any]) -> Completion:
    messages: list[dict[str, Any]] = body.get("messages") or []
    parsed = [content_text(m.get("content")) for m in messages]
    prompt_tokens = sum(word_count(text) for text, _ in parsed)
    images = sum(n for _, n in parsed)
    if messages and messages[-1].get("role") == "tool":
        text = f"Tool result: {parsed[-1][0]}"
        return _truncate(Completion(content=tokens(text), prompt_tokens=prompt_tokens), _limit(body))
    user_text = next(
        (parsed[i][0] for i in reversed(range(len(messages))) if messages[i].get("role") == "user"), ""
    )
    tools = [t.get("function", {}) for t in body.get("tools") or [] if isinstance(t, dict)]
    names = requested_tools(user_text, [str(t.get("name")) for t in tools])
    if names:
        schemas = {str(t.get("name")): t.get("parameters") for t in tools}
        calls = [
            {
                "id": call_id(user_text, i),
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": dumps(tool_arguments(user_text, schemas.get(name), len(names) == 1)),
                },
            }
            for i, name in enumerate(names)
        ]
        return Completion(tool_calls=calls, finish_reason="tool_calls", prompt_tokens=prompt_tokens)
    fmt = (body.get("response_format") or {}).get("type")
    text = (
        dumps({"echo": user_text}) if fmt in ("json_object", "json_schema") else echo_text(user_text, images)
    )
    return _truncate(Completion(content=tokens(text), prompt_tokens=prompt_tokens), _limit(body))


def plan_completion(body: dict[str, Any]) -> Completion:
    prompt = body.get("prompt") or ""
    if isinstance(prompt, list):
        prompt = " ".join(str(p) for p in prompt)
    result = Completion(content=tokens(echo_text(str(prompt))), prompt_tokens=word_count(str(prompt)))
    return _truncate(result, _limit(body))


class Renderer:
    """Renders a Completion as OpenAI objects, with the emulator's extra fields."""

    def __init__(self, model: str, served_by: str, kind: str) -> None:
        self.model = model
        self.created = int(time.time())
        self.kind = kind  # "chat" or "text"
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        self.id = f"{prefix}-emu{time.monotonic_ns() % 10**12:012d}"
        self.extra = {"system_fingerprint": "fp_emulator", "x_emulator": {"served_by": served_by}}

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        out = {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices}
        return out | self.extra

    def single(self, result: Completion) -> dict[str, Any]:
        text = "".join(result.content)
        if self.kind == "text":
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": result.finish_reason}
            return self._envelope("text_completion", [choice]) | {"usage": result.usage()}
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if result.tool_calls:
            message["tool_calls"] = result.tool_calls
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": result.finish_reason}
        return self._envelope("chat.completion", [choice]) | {"usage": result.usage()}

    def chunks(self, result: Completion, include_usage: bool) -> Iterator[dict[str, Any]]:
        usage_field: dict[str, Any] = {"usage": None} if include_usage else {}
        for delta, finish in self._deltas(result):
            if self.kind == "text":
                choice = {
                    "text": delta.get("content", ""),
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": finish,
                }
                yield self._envelope("text_completion", [choice]) | usage_field
            else:
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                yield self._envelope("chat.completion.chunk", [choice]) | usage_field
        if include_usage:
            obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
            yield self._envelope(obj, []) | {"usage": result.usage()}

    def _deltas(self, result: Completion) -> Iterator[tuple[dict[str, Any], str | None]]:
        if self.kind == "chat":
            yield {"role": "assistant", "content": "", "refusal": None}, None
        for piece in result.content:
            yield {"content": piece}, None
        for index, call in enumerate(result.tool_calls):
            head = {"index": index, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
            yield {"tool_calls": [head]}, None
            for piece in tokens(call["function"]["arguments"]) or [call["function"]["arguments"]]:
                yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}, None
        yield {}, result.finish_reason
