"""OpenAI answers and the model: ``write_chat``, ``write_completion`` and ``write_embeddings``
answer a client (``chat.completion``, ``text_completion``, an embedding list); ``read`` and
``read_embeddings`` take an OpenAI-compatible upstream's answer into the model.

Reading is lenient, as upstreams differ: choice 0 (corral asks for one), content or a refusal as
the text, ``reasoning_content`` or ``reasoning`` as the thinking, tool-call arguments the
upstream sent as unparseable JSON (or not an object) as ``{}``, either logprobs shape (the chat
``content`` list, the legacy parallel lists). Writing: a finish reason ``tool_calls`` when the
answer called tools, base64 embeddings as the little-endian float32 bytes OpenAI sends.
"""

from __future__ import annotations

import base64
import secrets
import struct
from typing import Any

from corral.conversation.answer import Answer, Embeddings, FinishReason, TokenLogprob, Usage
from corral.conversation.request import ToolCall
from corral.errors import InvalidRequest

# -- writing an answer to a client -------------------------------------------------------------


def write_chat(answer: Answer, *, request_id: str, model: str, created: int) -> dict[str, Any]:
    calls = tool_calls(answer.tool_calls)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.text if answer.text or not calls else None,
    }
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
    if calls:
        message["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": message,
        "logprobs": chat_logprobs(answer.logprobs),
        "finish_reason": finish_reason(answer.finish, bool(calls)),
    }
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage_dict(answer.usage),
    }


def write_completion(answer: Answer, *, request_id: str, model: str, created: int) -> dict[str, Any]:
    choice = {
        "text": answer.text,
        "index": 0,
        "logprobs": completion_logprobs(answer.logprobs, 0),
        "finish_reason": finish_reason(answer.finish, False),
    }
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage_dict(answer.usage),
    }


def write_embeddings(emb: Embeddings, *, model: str, encoding_format: str | None) -> dict[str, Any]:
    """With ``encoding_format="base64"`` each vector is the base64 of its little-endian float32
    bytes, which is what OpenAI sends and what the ``openai`` client decodes."""
    if encoding_format not in (None, "float", "base64"):
        raise InvalidRequest("encoding_format must be 'float' or 'base64'.", param="encoding_format")
    items: list[dict[str, Any]] = []
    for i, vector in enumerate(emb.vectors):
        embedding: Any = vector
        if encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        items.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = emb.prompt_tokens
    return {
        "object": "list",
        "data": items,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def finish_reason(reason: FinishReason | None, saw_tool_calls: bool) -> str:
    if saw_tool_calls:
        return "tool_calls"
    return reason if reason is not None and reason != "tool_calls" else "stop"


def usage_dict(usage: Usage | None) -> dict[str, int]:
    prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def tool_calls(calls: list[ToolCall], *, start: int = 0, indexed: bool = False) -> list[dict[str, Any]]:
    """The model's tool calls as OpenAI's (arguments as a JSON string); a call without an id gets
    one. ``indexed`` adds a stream's ``index``, numbered from ``start``."""
    out: list[dict[str, Any]] = []
    for call in calls:
        converted: dict[str, Any] = {
            "id": call.id or f"call_{secrets.token_hex(12)}",
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments_json()},
        }
        if indexed:
            converted = {"index": start + len(out), **converted}
        out.append(converted)
    return out


def _token_bytes(lp: TokenLogprob) -> list[int]:
    return lp.bytes if lp.bytes is not None else list(lp.token.encode())


def chat_logprobs(logprobs: list[TokenLogprob] | None) -> dict[str, Any] | None:
    """OpenAI's ``choice.logprobs`` (None when there are none)."""
    if not logprobs:
        return None
    content = [
        {
            "token": lp.token,
            "logprob": lp.logprob,
            "bytes": _token_bytes(lp),
            "top_logprobs": [
                {"token": t.token, "logprob": t.logprob, "bytes": _token_bytes(t)} for t in lp.top or ()
            ],
        }
        for lp in logprobs
    ]
    return {"content": content, "refusal": None}


def completion_logprobs(logprobs: list[TokenLogprob] | None, offset: int) -> dict[str, Any] | None:
    """The legacy completions shape; offsets count from the first generated character
    (``offset`` is where this piece starts)."""
    if not logprobs:
        return None
    out: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for lp in logprobs:
        out["tokens"].append(lp.token)
        out["token_logprobs"].append(lp.logprob)
        out["top_logprobs"].append(None if lp.top is None else {t.token: t.logprob for t in lp.top})
        out["text_offset"].append(offset)
        offset += len(lp.token)
    return out


# -- reading an upstream's answer --------------------------------------------------------------


def read(data: dict[str, Any]) -> Answer:
    """A ``chat.completion`` or ``text_completion`` in the model (choice 0)."""
    choice = first_choice(data)
    msg = choice.get("message")
    answer = Answer(finish=_finish(choice.get("finish_reason")), usage=read_usage(data.get("usage")))
    if isinstance(msg, dict):
        answer.text = text(msg.get("content")) or text(msg.get("refusal"))
        if not text(msg.get("content")):
            answer.refusal = text(msg.get("refusal"))  # also the text, for surfaces with no place for it
        answer.reasoning = thinking(msg)
        raw = msg.get("tool_calls")
        if isinstance(raw, list):
            answer.tool_calls = [read_call(c, i) for i, c in enumerate(c for c in raw if isinstance(c, dict))]
    else:
        answer.text = text(choice.get("text"))
    answer.logprobs = read_logprobs(choice.get("logprobs")) or None
    return answer


def read_embeddings(data: dict[str, Any]) -> Embeddings:
    items = data.get("data")
    items = [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
    items.sort(key=lambda item: item.get("index") if isinstance(item.get("index"), int) else 0)
    usage = data.get("usage")
    return Embeddings([_vector(item.get("embedding")) for item in items], _count(usage, "prompt_tokens"))


def read_usage(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    return Usage(_count(usage, "prompt_tokens"), _count(usage, "completion_tokens"))


def read_call(call: dict[str, Any], index: int) -> ToolCall:
    """An OpenAI tool call (arguments as a JSON string) in the model (arguments as an object)."""
    fn = call.get("function")
    fn = fn if isinstance(fn, dict) else {}
    args = fn.get("arguments")
    if isinstance(args, str):
        args = ToolCall("", args).arguments_object()
    out = ToolCall(text(fn.get("name")), args if isinstance(args, dict) else {}, index=index)
    if isinstance(call.get("id"), str) and call["id"]:
        out.id = call["id"]
    return out


def read_logprobs(raw: Any) -> list[TokenLogprob]:
    """OpenAI logprobs (chat ``content`` list or the legacy parallel lists) in the model."""
    if not isinstance(raw, dict):
        return []
    if isinstance(raw.get("content"), list):
        return [_token(e, e.get("top_logprobs")) for e in raw["content"] if isinstance(e, dict)]
    tokens, values, tops = raw.get("tokens"), raw.get("token_logprobs"), raw.get("top_logprobs")
    if not isinstance(tokens, list) or not isinstance(values, list):
        return []
    out = []
    for k, (token, value) in enumerate(zip(tokens, values, strict=False)):
        top = tops[k] if isinstance(tops, list) and k < len(tops) and isinstance(tops[k], dict) else {}
        alternatives = [{"token": t, "logprob": v} for t, v in top.items()]
        out.append(_token({"token": token, "logprob": value}, alternatives))
    return out


def _token(entry: dict[str, Any], top: Any) -> TokenLogprob:
    value = entry.get("logprob")
    raw_bytes = entry.get("bytes")
    alternatives = None
    if isinstance(top, list) and top:
        alternatives = tuple(_token(t, None) for t in top if isinstance(t, dict))
    return TokenLogprob(
        text(entry.get("token")),
        value if isinstance(value, int | float) else 0.0,
        raw_bytes if isinstance(raw_bytes, list) else None,
        alternatives,
    )


def first_choice(data: dict[str, Any]) -> dict[str, Any]:
    """Choice 0 (corral asks for one), or {} when the object has none."""
    choices = data.get("choices")
    for choice in choices if isinstance(choices, list) else []:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    return {}


def _finish(reason: Any) -> FinishReason | None:
    if reason in ("stop", "length", "tool_calls", "content_filter"):
        return reason  # type: ignore[no-any-return]
    return "stop" if isinstance(reason, str) and reason else None


def text(value: Any) -> str:
    if isinstance(value, list):  # content parts, as a few servers send
        return "".join(text(p.get("text")) for p in value if isinstance(p, dict))
    return value if isinstance(value, str) else ""


def thinking(msg: dict[str, Any]) -> str:
    return text(msg.get("reasoning_content")) or text(msg.get("reasoning"))


def _count(usage: Any, key: str) -> int:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _vector(raw: Any) -> list[float]:
    if isinstance(raw, str):
        packed = base64.b64decode(raw)
        return list(struct.unpack(f"<{len(packed) // 4}f", packed[: len(packed) // 4 * 4]))
    return [float(v) for v in raw] if isinstance(raw, list) else []
