"""The translation goldens (``tests/agents/goldens/*.json``): loading them and comparing against them.

A case says which client surface (``anthropic_messages``, ``openai_responses``, ``openai_chat``)
meets which upstream type (``ollama``, ``openai``, ``anthropic``), and what is translated:

- ``request``: the client's body (``input``) to the upstream body (``expected``, exact), or the
  refusal (``error``: status, error type, optional ``param``, words the message ``contains``);
- ``answer``: an upstream's whole answer (``upstream_answer``) to the client's (``expected``);
- ``stream``: an upstream's stream (``upstream_stream``; ``"[DONE]"`` and ``"<connection closed>"``
  mark its end) to the client's events (``expected``), compared after ``normalize``.

Strings ``"re:<pattern>"`` in an expectation match what fully matches the pattern (ids and
signatures corral makes up); ``"match": "subset"`` compares only the keys an expected object
gives (lists still compare item by item, same length).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DIR = Path(__file__).resolve().parent / "goldens"
SURFACES = ("anthropic_messages", "openai_responses", "openai_chat")
UPSTREAMS = ("ollama", "openai", "anthropic")
KINDS = ("request", "answer", "stream")


def cases() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(DIR.glob("*.json")):
        for case in json.loads(path.read_text())["cases"]:
            out.append(case | {"file": path.name})
    return out


def mismatch(expected: Any, actual: Any, subset: bool, where: str = "$") -> str | None:
    """Where ``actual`` differs from ``expected`` (None when it matches)."""
    if isinstance(expected, str) and expected.startswith("re:"):
        if isinstance(actual, str) and re.fullmatch(expected[3:], actual, re.DOTALL):
            return None
        return f"{where}: {actual!r} does not match /{expected[3:]}/"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where}: expected an object, got {actual!r}"
        if not subset and set(actual) != set(expected):
            return f"{where}: keys {sorted(actual)} != expected {sorted(expected)}"
        for key, value in expected.items():
            if key not in actual:
                return f"{where}: missing key {key!r}"
            problem = mismatch(value, actual[key], subset, f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{where}: expected {len(expected)} items, got {actual!r}"
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            problem = mismatch(want, got, subset, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if expected != actual or type(expected) is not type(actual):
        return f"{where}: {actual!r} != expected {expected!r}"
    return None


# ---------------------------------------------------------------------------- normalizing streams


def messages_events(events: list[tuple[str, dict[str, Any]]]) -> list[list[Any]]:
    """Anthropic SSE events without pings, consecutive deltas of one block and kind merged."""
    out: list[list[Any]] = []
    for name, data in events:
        if name == "ping":
            continue
        last = out[-1][1] if out else None
        if (
            name == "content_block_delta"
            and last is not None
            and last.get("type") == "content_block_delta"
            and last["index"] == data["index"]
            and last["delta"]["type"] == data["delta"]["type"]
            and data["delta"]["type"] != "signature_delta"
        ):
            field = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}
            key = field[data["delta"]["type"]]
            last["delta"] = last["delta"] | {key: last["delta"][key] + data["delta"][key]}
            continue
        out.append([name, json.loads(json.dumps(data))])
    return out


_MERGED = {"response.output_text.delta", "response.function_call_arguments.delta",
           "response.reasoning_summary_text.delta", "response.reasoning_text.delta"}  # fmt: skip


def responses_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses events with ``sequence_number`` checked (0, 1, 2...) and dropped, consecutive
    deltas of one item merged."""
    out: list[dict[str, Any]] = []
    for number, event in enumerate(events):
        if event.get("sequence_number") != number:
            raise AssertionError(f"event {number} has sequence_number {event.get('sequence_number')}")
        data = {k: v for k, v in event.items() if k != "sequence_number"}
        last = out[-1] if out else None
        if (
            data["type"] in _MERGED
            and last is not None
            and last["type"] == data["type"]
            and last.get("item_id") == data.get("item_id")
            and last.get("output_index") == data.get("output_index")
        ):
            last["delta"] += data["delta"]
            continue
        out.append(data)
    return out


def chat_chunks(chunks: list[Any]) -> list[list[Any]]:
    """Chat-completion chunks as [delta, finish_reason] pairs (consecutive content, or argument
    fragments of one tool index, merged), then ["usage", {...}] or ["error", {...}]."""
    out: list[list[Any]] = []
    for chunk in chunks:
        if "error" in chunk:
            out.append(["error", chunk["error"]])
            continue
        for choice in chunk.get("choices") or []:
            delta, finish = dict(choice.get("delta") or {}), choice.get("finish_reason")
            last = out[-1] if out and out[-1][0] not in ("usage", "error") else None
            if last is not None and last[1] is None and finish is None and _merge(last[0], delta):
                continue
            out.append([delta, finish])
        if chunk.get("usage"):
            out.append(["usage", chunk["usage"]])
    return out


def _merge(into: dict[str, Any], delta: dict[str, Any]) -> bool:
    """Fold ``delta`` into the previous one if it only continues it."""
    if set(delta) == {"content"} and "content" in into and "tool_calls" not in into:
        into["content"] = (into["content"] or "") + (delta["content"] or "")
        return True
    calls = delta.get("tool_calls")
    if set(delta) == {"tool_calls"} and len(calls) == 1 and "id" not in calls[0] and into.get("tool_calls"):
        previous = into["tool_calls"][-1]
        if previous["index"] == calls[0]["index"]:
            fn = previous.setdefault("function", {})
            fn["arguments"] = fn.get("arguments", "") + calls[0].get("function", {}).get("arguments", "")
            return True
    return False
