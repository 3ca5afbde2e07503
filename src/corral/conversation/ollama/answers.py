"""Ollama answers and the model: ``write_chat``, ``write_generate`` and ``write_embed`` answer an
Ollama client (the final ``/api/chat`` or ``/api/generate`` object, an ``/api/embed`` or legacy
``/api/embeddings`` answer); ``read`` and ``read_embed`` take an Ollama upstream's answer (its
final object, or its stream folded by ``Aggregator``) into the model.

Decisions:

* ``done_reason`` is ``length`` for the finish reason ``length`` and ``stop`` for everything else
  (tool calls, content filter...), as Ollama reports; missing token counts are 0.
* ``load_duration`` is 0. A stream reports the time to its first generated piece as
  ``prompt_eval_duration`` and the rest as ``eval_duration``; a whole answer cannot be split, so
  its ``prompt_eval_duration`` is 0 and ``eval_duration`` the whole time.
* Tool calls carry their arguments as an object (``{}`` when the model's text is not one) and a
  running ``function.index``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from corral.conversation.answer import Answer, Embeddings, FinishReason, TokenLogprob, Usage
from corral.conversation.request import ToolCall

# -- writing an answer to a client -------------------------------------------------------------


def write_chat(answer: Answer, *, model: str, started_ns: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text}
    if answer.reasoning:
        message["thinking"] = answer.reasoning
    if answer.tool_calls:
        message["tool_calls"] = tool_calls(answer.tool_calls)
    out = {"model": model, "created_at": created_at(), "message": message}
    add_logprobs(out, answer.logprobs)
    return final(out, answer.finish, answer.usage, started_ns, None)


def write_generate(answer: Answer, *, model: str, started_ns: int) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "created_at": created_at(), "response": answer.text}
    if answer.reasoning:
        out["thinking"] = answer.reasoning
    add_logprobs(out, answer.logprobs)
    return final(out, answer.finish, answer.usage, started_ns, None)


def write_embed(
    emb: Embeddings, *, model: str, legacy: bool, started_ns: int | None = None
) -> dict[str, Any]:
    """An ``/api/embed`` answer, or with ``legacy`` an ``/api/embeddings`` one (the first vector)."""
    if legacy:
        return {"embedding": emb.vectors[0] if emb.vectors else []}
    return {
        "model": model,
        "embeddings": emb.vectors,
        "total_duration": max(0, time.monotonic_ns() - started_ns) if started_ns is not None else 0,
        "load_duration": 0,
        "prompt_eval_count": emb.prompt_tokens,
    }


def created_at(ns: int | None = None) -> str:
    """An RFC 3339 UTC time as Ollama (Go) writes it: up to nine fraction digits, zeros trimmed."""
    ns = time.time_ns() if ns is None else ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return stamp + (f".{fraction:09d}".rstrip("0") if fraction else "") + "Z"


def done_reason(reason: Any) -> str:
    """Ollama's ``done_reason`` for a finish reason."""
    return "length" if reason == "length" else "stop"


def final(
    out: dict[str, Any], reason: Any, usage: Usage | None, started_ns: int, first_ns: int | None
) -> dict[str, Any]:
    """``out`` completed as Ollama's last object: done, done_reason and the metrics."""
    now = time.monotonic_ns()
    out["done_reason"] = done_reason(reason)
    out["done"] = True
    out["total_duration"] = max(0, now - started_ns)
    out["load_duration"] = 0
    out["prompt_eval_count"] = usage.prompt_tokens if usage else 0
    first = started_ns if first_ns is None else first_ns
    out["prompt_eval_duration"] = max(0, first - started_ns)
    out["eval_count"] = usage.completion_tokens if usage else 0
    out["eval_duration"] = max(0, now - first)
    return out


def tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, call in enumerate(calls):
        converted: dict[str, Any] = {
            "function": {"index": i, "name": call.name, "arguments": call.arguments_object()}
        }
        if call.id:
            converted["id"] = call.id
        out.append(converted)
    return out


def add_logprobs(out: dict[str, Any], logprobs: list[TokenLogprob] | None) -> None:
    if logprobs:
        out["logprobs"] = [_logprob(lp) for lp in logprobs]


def _logprob(lp: TokenLogprob) -> dict[str, Any]:
    out: dict[str, Any] = {"token": lp.token, "logprob": lp.logprob}
    if lp.bytes is not None:
        out["bytes"] = lp.bytes
    if lp.top:
        out["top_logprobs"] = [_logprob(t) for t in lp.top]
    return out


# -- reading an upstream's answer --------------------------------------------------------------


def read(data: dict[str, Any]) -> Answer:
    """Ollama's final ``/api/chat`` or ``/api/generate`` object (a folded stream) in the model."""
    msg = data.get("message")
    raw_logprobs = data.get("logprobs")
    answer = Answer(usage=read_usage(data))
    if raw_logprobs is not None:
        answer.logprobs = read_logprobs(raw_logprobs) or None
    if isinstance(msg, dict):
        answer.text = text(msg.get("content"))
        answer.reasoning = text(msg.get("thinking"))
        if "tool_calls" in msg:
            answer.tool_calls = read_calls(msg["tool_calls"])
    else:
        answer.text = text(data.get("response"))
        answer.reasoning = text(data.get("thinking"))
    answer.finish = finish_reason(data.get("done_reason"), bool(answer.tool_calls))
    return answer


def read_embed(data: dict[str, Any]) -> Embeddings:
    vectors = data.get("embeddings")
    return Embeddings(
        list(vectors) if isinstance(vectors, list) else [], count(data.get("prompt_eval_count"))
    )


def finish_reason(done: Any, saw_tool_calls: bool) -> FinishReason:
    """The finish reason of an Ollama ``done_reason`` ("stop", "length", "load", "unload")."""
    if saw_tool_calls:
        return "tool_calls"
    return "length" if done == "length" else "stop"


def read_usage(data: dict[str, Any]) -> Usage:
    return Usage(count(data.get("prompt_eval_count")), count(data.get("eval_count")))


def read_calls(raw: Any, start: int = 0) -> list[ToolCall]:
    """Ollama tool calls (arguments an object, or text as a few servers send) in the model."""
    if not isinstance(raw, list):
        return []
    calls: list[ToolCall] = []
    for call in raw:
        if not isinstance(call, dict):
            continue
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        args = fn.get("arguments")
        call_id = call.get("id")
        calls.append(
            ToolCall(
                text(fn.get("name")),
                args if isinstance(args, dict | str) else {},
                call_id if isinstance(call_id, str) and call_id else None,
                start + len(calls),
            )
        )
    return calls


def read_logprobs(raw: Any) -> list[TokenLogprob]:
    if not isinstance(raw, list):
        return []
    return [_read_logprob(entry) for entry in raw if isinstance(entry, dict)]


def _read_logprob(entry: dict[str, Any]) -> TokenLogprob:
    top = entry.get("top_logprobs")
    raw_bytes = entry.get("bytes")
    return TokenLogprob(
        text(entry.get("token")),
        entry.get("logprob", 0.0),
        raw_bytes if isinstance(raw_bytes, list) else None,
        tuple(_read_logprob(t) for t in top if isinstance(t, dict)) if isinstance(top, list) else None,
    )


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
