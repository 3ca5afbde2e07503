"""Fold an Ollama NDJSON stream into the single object ``stream: false`` would have returned.

corral streams from Ollama even when the client did not ask for a stream, so that a hung
instance is noticed at the first token and a stall between tokens is noticed at all.
"""

from __future__ import annotations

from typing import Any


class Aggregator:
    def __init__(self) -> None:
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._tool_calls: list[Any] = []
        self._logprobs: list[Any] = []
        self._final: dict[str, Any] | None = None
        self.error: str | None = None

    @property
    def done(self) -> bool:
        return self._final is not None or self.error is not None

    def add(self, obj: dict[str, Any]) -> None:
        if isinstance(obj.get("error"), str):
            self.error = obj["error"]
            return
        message = obj.get("message")
        if isinstance(message, dict):
            self._content.append(message.get("content") or "")
            self._thinking.append(message.get("thinking") or "")
            self._tool_calls.extend(message.get("tool_calls") or [])
        else:
            self._content.append(obj.get("response") or "")
            self._thinking.append(obj.get("thinking") or "")
        if isinstance(obj.get("logprobs"), list):
            self._logprobs.extend(obj["logprobs"])
        if obj.get("done"):
            self._final = obj

    def result(self, chat: bool) -> dict[str, Any]:
        """The merged object, shaped like Ollama's non-streamed answer."""
        merged = dict(self._final or {})
        text, thinking = "".join(self._content), "".join(self._thinking)
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            if self._tool_calls:
                message["tool_calls"] = self._tool_calls
            merged["message"] = message
        else:
            merged["response"] = text
            if thinking:
                merged["thinking"] = thinking
        if self._logprobs:
            merged["logprobs"] = self._logprobs
        return merged
