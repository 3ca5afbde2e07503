"""Anthropic Messages answers and the model, both directions.

``write_message`` is the whole answer a Messages client gets: a ``thinking`` block first when
the model reasoned (its text left out when the client asked for ``display: omitted``; its
signature made by corral, which no other upstream gives, so a client can send the block back),
then the text, then one ``tool_use`` block per call (the upstream's call id kept, else a
``toolu_`` id made up). The stop reason follows the finish reason (``tool_calls`` -> ``tool_use``,
``length`` -> ``max_tokens``, ``content_filter`` or a refusal -> ``refusal``). ``read`` is the
other way, for the ``anthropic`` provider type.
"""

from __future__ import annotations

import base64
import hashlib
import random
from typing import Any, Final

from corral.conversation.answer import Answer, FinishReason, Usage
from corral.conversation.request import ToolCall

STOP_REASONS: Final[dict[str, str]] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_FINISH: Final[dict[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def message_id() -> str:
    return f"msg_corral{random.getrandbits(96):024x}"  # an id, not a secret


def tool_id() -> str:
    return f"toolu_corral{random.getrandbits(64):016x}"


def signature(thinking: str) -> str:
    """A thinking block's signature: corral's own, a digest of its text."""
    return base64.b64encode(hashlib.sha256(b"corral-thinking:" + thinking.encode()).digest()).decode()


def stop_reason(finish: FinishReason | None, saw_tool_calls: bool, refused: bool = False) -> str:
    if refused:
        return "refusal"
    if saw_tool_calls and finish in (None, "stop", "tool_calls"):
        return "tool_use"
    return STOP_REASONS.get(finish or "stop", "end_turn")


def usage_dict(usage: Usage | None) -> dict[str, int]:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}


def write_message(
    answer: Answer, *, model: str, omit_thinking: bool, msg_id: str | None = None
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.reasoning:
        shown = "" if omit_thinking else answer.reasoning
        content.append({"type": "thinking", "thinking": shown, "signature": signature(shown)})
    refused = bool(answer.refusal) and answer.text == answer.refusal
    if answer.text:
        content.append({"type": "text", "text": answer.text})
    for call in answer.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": call.id or tool_id(),
                "name": call.name,
                "input": call.arguments_object(),
            }
        )
    return {
        "id": msg_id or message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(answer.finish, bool(answer.tool_calls), refused),
        "stop_sequence": None,
        "usage": usage_dict(answer.usage),
    }


# -- reading a Messages upstream's answer --------------------------------------------------------


def finish_of(reason: Any) -> FinishReason | None:
    return _FINISH.get(reason) if isinstance(reason, str) else None


def read_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = sum(
        _count(raw, k) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return Usage(prompt, _count(raw, "output_tokens"))


def _count(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def read(data: dict[str, Any]) -> Answer:
    """A Messages answer in the model (lenient: what is not understood is left out)."""
    answer = Answer(finish=finish_of(data.get("stop_reason")), usage=read_usage(data.get("usage")))
    texts: list[str] = []
    thoughts: list[str] = []
    for block in data.get("content") or []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thoughts.append(block["thinking"])
        elif kind == "tool_use" and isinstance(block.get("name"), str):
            args = block.get("input")
            call_id = block.get("id") if isinstance(block.get("id"), str) else None
            answer.tool_calls.append(
                ToolCall(
                    block["name"], args if isinstance(args, dict) else {}, call_id, len(answer.tool_calls)
                )
            )
    answer.text = "".join(texts)
    answer.reasoning = "".join(thoughts)
    if answer.finish == "content_filter":
        answer.refusal = answer.text
    return answer
