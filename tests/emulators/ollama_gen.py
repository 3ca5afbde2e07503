"""Deterministic generation for the Ollama emulator: /api/chat and /api/generate bodies.

A request is first turned into a :class:`Plan` (what the "model" will produce); the plan is
then rendered as streamed chunks or as one non-streamed object, the way Ollama shapes them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
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

PROMPT_NS_PER_TOKEN = 1_000_000  # 1 ms per prompt token
EVAL_NS_PER_TOKEN = 10_000_000  # 10 ms per generated token (100 tokens/s)


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Plan:
    """What one generation produces."""

    thinking: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    done_reason: str = "stop"
    prompt_eval_count: int = 0

    @property
    def eval_count(self) -> int:
        """Generated tokens: thinking plus content (plus one per tool call)."""
        return len(self.thinking) + len(self.content) + len(self.tool_calls)


def _apply_options(plan: Plan, options: dict[str, Any] | None) -> Plan:
    """``num_predict`` N > 0 caps thinking + content tokens at N (done_reason "length")."""
    limit = (options or {}).get("num_predict")
    if isinstance(limit, int) and limit > 0 and len(plan.thinking) + len(plan.content) > limit:
        plan.thinking = plan.thinking[:limit]
        plan.content = plan.content[: max(0, limit - len(plan.thinking))]
        plan.done_reason = "length"
    return plan


def _answer(text: str, images: int, body: dict[str, Any]) -> str:
    fmt = body.get("format")
    if fmt == "json" or isinstance(fmt, dict):
        return dumps({"echo": text})
    return echo_text(text, images)


def _thinking(text: str, body: dict[str, Any]) -> list[str]:
    think = body.get("think")
    return tokens(f"The user said: {text}") if think and think != "none" else []


def plan_chat(body: dict[str, Any]) -> Plan:
    messages: list[dict[str, Any]] = body.get("messages") or []
    prompt_words = sum(word_count(str(m.get("content") or "")) for m in messages)
    images = sum(len(m.get("images") or []) for m in messages)
    last = messages[-1]
    if last.get("role") == "tool":
        text = f"Tool result: {last.get('content') or ''}"
        return _apply_options(Plan(content=tokens(text), prompt_eval_count=prompt_words), body.get("options"))
    user_text = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    tools = [t.get("function", {}) for t in body.get("tools") or [] if isinstance(t, dict)]
    names = requested_tools(user_text, [str(t.get("name")) for t in tools])
    if names:
        schemas = {str(t.get("name")): t.get("parameters") for t in tools}
        calls = [
            {
                "id": call_id(user_text, i),
                "function": {
                    "index": i,
                    "name": name,
                    "arguments": tool_arguments(user_text, schemas.get(name), len(names) == 1),
                },
            }
            for i, name in enumerate(names)
        ]
        return Plan(tool_calls=calls, prompt_eval_count=prompt_words)
    plan = Plan(
        thinking=_thinking(user_text, body),
        content=tokens(_answer(user_text, images, body)),
        prompt_eval_count=prompt_words,
    )
    return _apply_options(plan, body.get("options"))


def plan_generate(body: dict[str, Any]) -> Plan:
    prompt = str(body.get("prompt") or "")
    images = len(body.get("images") or [])
    plan = Plan(
        thinking=_thinking(prompt, body),
        content=tokens(_answer(prompt, images, body)),
        prompt_eval_count=word_count(prompt) + word_count(str(body.get("system") or "")),
    )
    return _apply_options(plan, body.get("options"))


def metrics(plan: Plan, started: float, load_ns: int, token_delay: float) -> dict[str, int]:
    prompt_ns = plan.prompt_eval_count * PROMPT_NS_PER_TOKEN
    eval_ns = plan.eval_count * max(EVAL_NS_PER_TOKEN, int(token_delay * 1e9))
    elapsed = int((time.monotonic() - started) * 1e9)
    return {
        "total_duration": max(elapsed, load_ns + prompt_ns + eval_ns),
        "load_duration": load_ns,
        "prompt_eval_count": plan.prompt_eval_count,
        "prompt_eval_duration": prompt_ns,
        "eval_count": plan.eval_count,
        "eval_duration": eval_ns,
    }


def _message(content: str = "", thinking: str = "", tool_calls: list[Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        msg["thinking"] = thinking
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return msg


def chat_chunks(
    model: str, plan: Plan, started: float, load_ns: int, token_delay: float
) -> Iterator[dict[str, Any]]:
    """Streamed /api/chat objects: thinking, then content, then tool calls, then the final one."""
    for piece in plan.thinking:
        yield {
            "model": model,
            "created_at": now_rfc3339(),
            "message": _message(thinking=piece),
            "done": False,
        }
    for piece in plan.content:
        yield {"model": model, "created_at": now_rfc3339(), "message": _message(piece), "done": False}
    if plan.tool_calls:
        msg = _message(tool_calls=plan.tool_calls)
        yield {"model": model, "created_at": now_rfc3339(), "message": msg, "done": False}
    yield {
        "model": model,
        "created_at": now_rfc3339(),
        "message": _message(),
        "done": True,
        "done_reason": plan.done_reason,
        **metrics(plan, started, load_ns, token_delay),
    }


def chat_single(model: str, plan: Plan, started: float, load_ns: int) -> dict[str, Any]:
    msg = _message("".join(plan.content), "".join(plan.thinking), plan.tool_calls)
    return {
        "model": model,
        "created_at": now_rfc3339(),
        "message": msg,
        "done": True,
        "done_reason": plan.done_reason,
        **metrics(plan, started, load_ns, 0.0),
    }


def _context(plan: Plan) -> list[int]:
    return list(range(1, plan.prompt_eval_count + plan.eval_count + 1))


def generate_chunks(
    model: str, plan: Plan, started: float, load_ns: int, token_delay: float
) -> Iterator[dict[str, Any]]:
    """Streamed /api/generate objects (text in ``response``, reasoning in ``thinking``)."""
    for piece in plan.thinking:
        yield {"model": model, "created_at": now_rfc3339(), "response": "", "thinking": piece, "done": False}
    for piece in plan.content:
        yield {"model": model, "created_at": now_rfc3339(), "response": piece, "done": False}
    yield {
        "model": model,
        "created_at": now_rfc3339(),
        "response": "",
        "done": True,
        "done_reason": plan.done_reason,
        "context": _context(plan),
        **metrics(plan, started, load_ns, token_delay),
    }


def generate_single(model: str, plan: Plan, started: float, load_ns: int) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "response": "".join(plan.content)}
    if plan.thinking:
        out["thinking"] = "".join(plan.thinking)
    out |= {"done": True, "done_reason": plan.done_reason, "context": _context(plan)}
    return out | metrics(plan, started, load_ns, 0.0)


def load_response(model: str, kind: str, reason: str) -> dict[str, Any]:
    """The answer to an empty chat/generate (model load or unload)."""
    out: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
    if kind == "chat":
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    return out | {"done": True, "done_reason": reason}
