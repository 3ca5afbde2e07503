"""A Response object for the ``/v1/responses`` surface, from the model's answer.

Output items in order: a ``reasoning`` item when the model reasoned (its text as a summary when
the client asked for one with ``reasoning.summary``, and as ``reasoning_text`` content), a
``message`` with one ``output_text`` part (a ``refusal`` part when the model declined), and one
``function_call`` item per call (``call_id`` the upstream's id or one made up, ``arguments`` the
JSON text). ``status`` is ``completed``, or ``incomplete`` with ``max_output_tokens`` when the
limit cut the answer. The request's settings are echoed as the API does; ``store`` is false.
"""

from __future__ import annotations

import random
import time
from typing import Any

from corral.conversation.answer import Answer, Usage
from corral.conversation.request import ToolCall


def new_id(prefix: str) -> str:
    return f"{prefix}_corral{random.getrandbits(96):024x}"  # an id, not a secret


def usage_dict(usage: Usage | None, reasoning_tokens: int = 0) -> dict[str, Any]:
    prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": prompt + completion,
    }


def read_usage(raw: Any) -> Usage | None:
    """The token counts of a Responses upstream's ``usage`` object (None when there is none)."""
    if not isinstance(raw, dict):
        return None
    counts = [raw.get("input_tokens"), raw.get("output_tokens")]
    prompt, completion = (
        c if isinstance(c, int) and not isinstance(c, bool) and c > 0 else 0 for c in counts
    )
    return Usage(prompt, completion)


def wants_summary(body: dict[str, Any]) -> bool:
    reasoning = body.get("reasoning")
    return isinstance(reasoning, dict) and reasoning.get("summary") not in (None, "none")


def reasoning_item(item_id: str, text: str, summary: bool) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": [{"type": "summary_text", "text": text}] if summary else [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def message_item(item_id: str, text: str, refusal: bool, status: str = "completed") -> dict[str, Any]:
    part = {"type": "refusal", "refusal": text} if refusal else output_text(text)
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": [part]}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def call_id_of(call: ToolCall) -> str:
    return call.id or new_id("call")


def response(
    body: dict[str, Any],
    *,
    response_id: str,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    raw = body.get("reasoning")
    reasoning: dict[str, Any] = raw if isinstance(raw, dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created or int(time.time()),
        "status": status,
        "error": error,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": False,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def write_response(
    answer: Answer, body: dict[str, Any], *, model: str, response_id: str | None = None
) -> dict[str, Any]:
    rid = response_id or new_id("resp")
    output: list[dict[str, Any]] = []
    if answer.reasoning:
        output.append(reasoning_item(new_id("rs"), answer.reasoning, wants_summary(body)))
    if answer.text:
        refused = bool(answer.refusal) and answer.text == answer.refusal
        output.append(message_item(new_id("msg"), answer.text, refused))
    for call in answer.tool_calls:
        output.append(call_item(new_id("fc"), call_id_of(call), call.name, call.arguments_json()))
    status = "incomplete" if answer.finish == "length" else "completed"
    return response(
        body, response_id=rid, model=model, status=status, output=output, usage=usage_dict(answer.usage)
    )
