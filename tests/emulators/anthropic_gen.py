"""Deterministic generation for the Anthropic emulator: a Message, or its named SSE events.

The "model" answers the last text block ``T`` of the last user turn with ``"Echo: T"`` (agents
such as Claude Code put their reminders in the blocks before the prompt); a turn of ``tool_result``
blocks with ``"Tool result: <their text>"``; ``call <tool>`` in the turn asks for that tool
(``tool_choice`` may force or forbid it); ``REFUSE`` in the turn is refused (stop reason
``refusal``, no content). With thinking on (``enabled`` or ``adaptive``) a thinking block
``"The user said: T"`` comes first, with a signature the validator checks when the block is
sent back. ``max_tokens`` caps thinking + text + tool input tokens (0 generates nothing) and
``stop_sequences`` cut the text, as the API documents.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.emulators.common import dumps, echo_text, requested_tools, tokens, tool_arguments, word_count


def signature_of(thinking: str) -> str:
    """The signature the emulator gives a thinking block (stable across emulator instances)."""
    return base64.b64encode(hashlib.sha256(f"emu-thinking:{thinking}".encode()).digest()).decode()


def json_pieces(text: str, size: int = 7) -> list[str]:
    """Partial JSON as a model streams it: short pieces that split keys and values."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def tool_use_id(seed: str, index: int) -> str:
    return "toolu_emu" + hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:16]


@dataclass
class Block:
    """One output block: ``text`` (tokens) or ``tool_use`` (id, name, input)."""

    type: str
    pieces: list[str] = field(default_factory=list)
    id: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> int:
        return len(self.pieces) if self.type == "text" else len(json_pieces(dumps(self.input)))


@dataclass
class Plan:
    thinking: list[str] | None = None  # None: no thinking block; [] with display "omitted"
    blocks: list[Block] = field(default_factory=list)
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    input_tokens: int = 0

    @property
    def output_tokens(self) -> int:
        return len(self.thinking or []) + sum(b.cost for b in self.blocks)

    @property
    def thinking_text(self) -> str:
        return "".join(self.thinking or [])


def blocks_of(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def block_text(block: dict[str, Any]) -> str:
    """The words a block carries (for token counts and the echo)."""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text") or "")
    if kind == "tool_use":
        return f"{block.get('name', '')} {dumps(block.get('input') or {})}"
    if kind == "tool_result":
        return " ".join(block_text(b) for b in blocks_of(block.get("content") or ""))
    if kind == "thinking":
        return str(block.get("thinking") or "")
    return ""


def input_tokens(body: dict[str, Any]) -> int:
    """Words of the system prompt, every message block and the tool definitions."""
    system = body.get("system")
    words = (
        word_count(system)
        if isinstance(system, str)
        else sum(word_count(block_text(b)) for b in system or [])
    )
    for message in body.get("messages") or []:
        words += sum(word_count(block_text(b)) for b in blocks_of(message.get("content")))
    for tool in body.get("tools") or []:
        words += word_count(f"{tool.get('name', '')} {tool.get('description', '')}")
        words += word_count(dumps(tool.get("input_schema") or {}).replace(",", " "))
    return words


def _last_user_turn(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks of the last run of user messages (consecutive turns are combined)."""
    turn: list[dict[str, Any]] = []
    for message in reversed(messages):
        if message.get("role") == "system":
            continue
        if message.get("role") != "user":
            if turn:
                break
            continue
        turn = blocks_of(message.get("content")) + turn
    return turn


def _tool_names(body: dict[str, Any], user_text: str) -> list[str]:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    names = [str(t.get("name")) for t in tools]
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type")
    if kind == "none" or not names:
        return []
    if kind == "tool":
        wanted = [str(choice["name"])]
    else:
        wanted = requested_tools(user_text, names)
        if kind == "any" and not wanted:
            wanted = names[:1]
    return wanted[:1] if choice.get("disable_parallel_tool_use") else wanted


def plan(body: dict[str, Any], thinks: bool) -> Plan:
    """What the model produces for a valid request. ``thinks``: the model supports thinking."""
    turn = _last_user_turn(body["messages"])
    results = [b for b in turn if b.get("type") == "tool_result"]
    texts = [block_text(b) for b in turn if b.get("type") == "text"]
    text = texts[-1] if texts else ""  # agents put reminders first, the prompt in the last block
    images = sum(1 for b in turn if b.get("type") == "image")
    out = Plan(input_tokens=input_tokens(body))
    config = body.get("thinking") or {}
    if thinks and config.get("type") in ("enabled", "adaptive"):
        said = "The tool said: " + " ".join(map(block_text, results)) if results else f"The user said: {text}"
        out.thinking = [] if config.get("display") == "omitted" else tokens(said)
    if "REFUSE" in text:
        out.stop_reason = "refusal"
        return _cap(out, body)
    names = [] if results else _tool_names(body, text)
    if results:
        label = "Tool error: " if any(r.get("is_error") for r in results) else "Tool result: "
        out.blocks.append(Block("text", tokens(label + " ".join(map(block_text, results)))))
    elif names:
        schemas = {str(t.get("name")): t.get("input_schema") for t in body.get("tools") or []}
        if (body.get("tool_choice") or {"type": "auto"}).get("type") == "auto":
            out.blocks.append(Block("text", tokens(f"Calling {', '.join(names)}.")))
        for i, name in enumerate(names):
            args = tool_arguments(text, schemas.get(name), len(names) == 1)
            out.blocks.append(Block("tool_use", id=tool_use_id(text, i), name=name, input=args))
        out.stop_reason = "tool_use"
    else:
        fmt = ((body.get("output_config") or {}).get("format") or {}).get("type")
        answer = dumps({"echo": text}) if fmt == "json_schema" else echo_text(text, images)
        out.blocks.append(Block("text", tokens(answer)))
    _apply_stop_sequences(out, body.get("stop_sequences") or [])
    return _cap(out, body)


def _apply_stop_sequences(out: Plan, stops: list[str]) -> None:
    for block in out.blocks:
        if block.type != "text":
            continue
        text = "".join(block.pieces)
        hits = [(text.find(s), s) for s in stops if s in text]
        if hits:
            at, seq = min(hits)
            kept = tokens(text[:at])
            rest = text[len("".join(kept)) : at]  # trailing whitespace before the sequence
            block.pieces = [*kept, rest] if rest else kept
            out.blocks = out.blocks[: out.blocks.index(block) + 1]
            out.stop_reason, out.stop_sequence = "stop_sequence", seq
            return


def _cap(out: Plan, body: dict[str, Any]) -> Plan:
    budget = body.get("max_tokens")
    if not isinstance(budget, int) or out.output_tokens <= budget:
        return out
    if out.thinking:
        out.thinking = out.thinking[:budget]
        budget -= len(out.thinking)
    kept: list[Block] = []
    for block in out.blocks:
        if block.cost <= budget:
            kept.append(block)
            budget -= block.cost
        elif block.type == "text" and budget > 0:
            kept.append(Block("text", block.pieces[:budget]))
            budget = 0
        else:
            break
    out.blocks, out.stop_reason, out.stop_sequence = kept, "max_tokens", None
    return out


# ---------------------------------------------------------------------------- rendering


def _usage(out: Plan, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": out.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _final_blocks(out: Plan) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if out.thinking is not None:
        blocks.append(
            {"type": "thinking", "thinking": out.thinking_text, "signature": signature_of(out.thinking_text)}
        )
    for block in out.blocks:
        if block.type == "text":
            blocks.append({"type": "text", "text": "".join(block.pieces)})
        else:
            blocks.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
    return blocks


def message(out: Plan, model: str, message_id: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _final_blocks(out),
        "stop_reason": out.stop_reason,
        "stop_sequence": out.stop_sequence,
        "usage": _usage(out, out.output_tokens),
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {dumps(data)}\n\n".encode()


def error_event(error_type: str, message: str) -> bytes:
    return sse("error", {"type": "error", "error": {"type": error_type, "message": message}})


def events(out: Plan, model: str, message_id: str) -> Iterator[bytes]:
    """The named events of a streamed answer, in the documented order (ping after the first
    block starts)."""
    start = message(out, model, message_id) | {"content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = _usage(out, 1)
    yield sse("message_start", {"type": "message_start", "message": start})
    pinged = False
    for index, (head, deltas) in enumerate(_block_events(out)):
        yield sse(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": head}
        )
        if not pinged:
            yield sse("ping", {"type": "ping"})
            pinged = True
        for delta in deltas:
            yield sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
    if not pinged:
        yield sse("ping", {"type": "ping"})
    delta = {"stop_reason": out.stop_reason, "stop_sequence": out.stop_sequence}
    yield sse(
        "message_delta", {"type": "message_delta", "delta": delta, "usage": _usage(out, out.output_tokens)}
    )
    yield sse("message_stop", {"type": "message_stop"})


def _block_events(out: Plan) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    if out.thinking is not None:
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in out.thinking]
        deltas.append({"type": "signature_delta", "signature": signature_of(out.thinking_text)})
        yield {"type": "thinking", "thinking": "", "signature": ""}, deltas
    for block in out.blocks:
        if block.type == "text":
            yield {"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in block.pieces]
        else:
            head = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
            pieces = ["", *json_pieces(dumps(block.input))]
            yield head, [{"type": "input_json_delta", "partial_json": p} for p in pieces]
