"""Request validation for the Anthropic emulator: what the hosted Messages API refuses.

The hosted API validates a body strictly (a pydantic-style model on its side): a missing
required field is ``<field>: Field required``, a field it does not know is ``<field>: Extra
inputs are not permitted``, a value out of range names the field and the bound.
Message-level rules follow the API reference: roles are ``user``, ``assistant`` and ``system``
(a system message holds text only and stands outside the turn pairing), consecutive turns of
one role are combined rather than refused, every ``tool_use`` must be answered by a
``tool_result`` with its id in the next (user) turn and every ``tool_result`` must answer a
``tool_use`` of the turn before, thinking blocks carry the signature the API gave them,
``budget_tokens`` is at least 1024 and below ``max_tokens``. Every refusal is a 400
``invalid_request_error`` unless said otherwise.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

# what the Python SDK's MessageCreateParams knows, plus the sampling fields older models take
CREATE_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stream",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
        "service_tier",
        "container",
        "cache_control",
        "diagnostics",
        "inference_geo",
        "output_config",
        "speed",
        "prefill",
        "message",
        "user_profile_id",
        "workspace_id",
        "context_management",
        "mcp_servers",
    }
)
COUNT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "cache_control",
        "output_config",
        "speed",
        "prefill",
        "message",
        "user_profile_id",
        "workspace_id",
        "context_management",
        "mcp_servers",
    }
)
BLOCK_TYPES = frozenset(
    {
        "text",
        "image",
        "document",
        "tool_use",
        "tool_result",
        "thinking",
        "redacted_thinking",
        "server_tool_use",
        "web_search_tool_result",
        "search_result",
        "container_upload",
    }
)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MIN_BUDGET = 1024


class Refused(Exception):
    """A request the API would refuse: ``status``, Anthropic error ``type`` and ``message``."""

    def __init__(self, message: str, status: int = 400, type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type_


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_create(body: dict[str, Any], signature_of: Any) -> None:
    """Validate a ``POST /v1/messages`` body. ``signature_of(text)`` gives a thinking signature."""
    _check_fields(body, CREATE_FIELDS)
    for name in ("model", "messages", "max_tokens"):
        if name not in body:
            raise Refused(f"{name}: Field required")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        raise Refused("max_tokens: Input should be a valid integer greater than or equal to 0")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise Refused("stream: Input should be a valid boolean")
    _check_common(body, signature_of)
    _check_sampling(body)
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) and s for s in stops)):
        raise Refused("stop_sequences: Input should be a list of non-empty strings")
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled" and thinking["budget_tokens"] >= max_tokens:
        raise Refused(
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation "
            "at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
        )
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or set(metadata) - {"user_id"}:
            raise Refused("metadata: only `user_id` is accepted")
        if metadata.get("user_id") is not None and not isinstance(metadata["user_id"], str):
            raise Refused("metadata.user_id: Input should be a valid string")


def check_count(body: dict[str, Any], signature_of: Any) -> None:
    """Validate a ``POST /v1/messages/count_tokens`` body (no ``max_tokens``, no ``stream``)."""
    _check_fields(body, COUNT_FIELDS)
    for name in ("model", "messages"):
        if name not in body:
            raise Refused(f"{name}: Field required")
    _check_common(body, signature_of)


def _check_fields(body: dict[str, Any], known: frozenset[str]) -> None:
    for name in body:
        if name not in known:
            raise Refused(f"{name}: Extra inputs are not permitted")


def _check_sampling(body: dict[str, Any]) -> None:
    for name, low, high in (("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)):
        value = body.get(name)
        if value is None:
            continue
        if not _number(value):
            raise Refused(f"{name}: Input should be a valid number")
        if not low <= value <= high:
            raise Refused(f"{name}: Input should be less than or equal to {high:g} and at least {low:g}")
    top_k = body.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        raise Refused("top_k: Input should be a valid integer greater than or equal to 0")
    thinking = body.get("thinking") or {}
    if thinking.get("type") in ("enabled", "adaptive"):
        if body.get("temperature") not in (None, 1, 1.0):
            raise Refused("`temperature` may only be set to 1 when thinking is enabled.")
        if body.get("top_k") is not None:
            raise Refused("`top_k` is not supported when thinking is enabled.")


def _check_common(body: dict[str, Any], signature_of: Any) -> None:
    if not isinstance(body["model"], str) or not body["model"]:
        raise Refused("model: Input should be a non-empty string")
    _check_system(body.get("system"))
    tools = _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"), tools, body.get("thinking"))
    _check_thinking(body.get("thinking"))
    _check_messages(body["messages"], signature_of)


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise Refused("system: Input should be a valid string or a list of text blocks")
    for i, block in enumerate(system):
        if (
            not isinstance(block, dict)
            or block.get("type") != "text"
            or not isinstance(block.get("text"), str)
        ):
            raise Refused(f"system.{i}: Input should be a text block with a `text` string")


def _check_tools(tools: Any) -> list[str]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise Refused("tools: Input should be a valid list")
    names: list[str] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise Refused(f"tools.{i}: Input should be a valid dictionary")
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise Refused(f"tools.{i}.name: String should match pattern '{TOOL_NAME.pattern}'")
        kind = tool.get("type")
        if kind in (None, "custom"):
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise Refused(f"tools.{i}.custom.input_schema: Field required")
            if schema.get("type") != "object":
                raise Refused(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        if name in names:
            raise Refused(f"tools: Tool names must be unique. Duplicate name: {name}")
        names.append(name)
    return names


def _check_tool_choice(choice: Any, tools: list[str], thinking: Any) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        raise Refused("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise Refused("tool_choice.tool.name: Field required")
        if choice["name"] not in tools:
            raise Refused(f"tool_choice.name: Tool '{choice['name']}' not found in provided tools")
    if kind in ("any", "tool") and not tools:
        raise Refused("tool_choice: a tool_choice of `any` or `tool` needs `tools`")
    if (
        kind in ("any", "tool")
        and isinstance(thinking, dict)
        and thinking.get("type") in ("enabled", "adaptive")
    ):
        raise Refused("Thinking may not be enabled when tool_choice forces tool use.")


def _check_thinking(thinking: Any) -> None:
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "disabled", "adaptive", "between_tools"):
        raise Refused("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise Refused("thinking.enabled.budget_tokens: Field required")
        if budget < MIN_BUDGET:
            raise Refused(
                f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_BUDGET}"
            )


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise Refused(f"{where}.content: Input should be a valid string or list of content blocks")
    for i, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            raise Refused(
                f"{where}.content.{i}: Input tag '{(block or {}).get('type')}' found using 'type' "
                "does not match any of the expected tags"
            )
    return content


def _check_messages(messages: Any, signature_of: Any) -> None:
    if not isinstance(messages, list):
        raise Refused("messages: Input should be a valid list")
    if not messages:
        raise Refused("messages: at least one message is required")
    turns: list[tuple[str, list[dict[str, Any]], int]] = []  # consecutive turns of a role combine
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise Refused(f"{where}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise Refused(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
        if "content" not in message:
            raise Refused(f"{where}.content: Field required")
        blocks = _blocks(message["content"], where)
        if role == "system":  # a mid-conversation system turn: text only, outside the turn pairing
            if any(b["type"] != "text" for b in blocks):
                raise Refused(f"{where}.content: a system message holds text blocks only")
            continue
        for j, block in enumerate(blocks):
            _check_block(block, role, f"{where}.content.{j}", signature_of)
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, list(blocks), i))
    _check_tool_pairs(turns)


def _check_block(block: dict[str, Any], role: str, where: str, signature_of: Any) -> None:
    kind = block["type"]
    if kind == "text" and not isinstance(block.get("text"), str):
        raise Refused(f"{where}.text: Field required")
    if kind == "image":
        if role != "user":
            raise Refused(f"{where}: image blocks are only allowed in user messages")
        _check_image(block.get("source"), where)
    if kind == "tool_use":
        if role != "assistant":
            raise Refused(f"{where}: tool_use blocks are only allowed in assistant messages")
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise Refused(f"{where}: tool_use blocks need `id` and `name`")
        if not isinstance(block.get("input"), dict):
            raise Refused(f"{where}.input: Input should be a valid dictionary")
    if kind == "tool_result":
        if role != "user":
            raise Refused(f"{where}: tool_result blocks are only allowed in user messages")
        if not isinstance(block.get("tool_use_id"), str):
            raise Refused(f"{where}.tool_use_id: Field required")
        content = block.get("content")
        if content is not None and not isinstance(content, str):
            for k, part in enumerate(_blocks(content, where)):
                _check_block(part, "user", f"{where}.content.{k}", signature_of)
    if kind == "thinking":
        if role != "assistant":
            raise Refused(f"{where}: thinking blocks are only allowed in assistant messages")
        text, signature = block.get("thinking"), block.get("signature")
        if not isinstance(text, str) or not isinstance(signature, str):
            raise Refused(f"{where}: thinking blocks need `thinking` and `signature`")
        if signature != signature_of(text):
            raise Refused(f"{where}: Invalid `signature` in `thinking` block")


def _check_image(source: Any, where: str) -> None:
    if not isinstance(source, dict):
        raise Refused(f"{where}.source: Field required")
    kind = source.get("type")
    if kind == "url":
        if not isinstance(source.get("url"), str):
            raise Refused(f"{where}.source.url: Field required")
        return
    if kind != "base64":
        raise Refused(f"{where}.source.type: Input should be 'base64' or 'url'")
    if source.get("media_type") not in IMAGE_TYPES:
        raise Refused(f"{where}.source.media_type: Input should be one of {', '.join(IMAGE_TYPES)}")
    try:
        base64.b64decode(str(source.get("data") or ""), validate=True)
    except (binascii.Error, ValueError):
        raise Refused(f"{where}.source.base64: invalid base64 data") from None
    if not source.get("data"):
        raise Refused(f"{where}.source.data: image data must not be empty")


def _check_tool_pairs(turns: list[tuple[str, list[dict[str, Any]], int]]) -> None:
    for t, (role, blocks, index) in enumerate(turns):
        if role == "assistant":
            asked = [b["id"] for b in blocks if b["type"] == "tool_use"]
            if not asked or t == len(turns) - 1:
                continue
            answered = {b["tool_use_id"] for b in turns[t + 1][1] if b["type"] == "tool_result"}
            missing = [i for i in asked if i not in answered]
            if missing:
                raise Refused(
                    f"messages.{turns[t + 1][2]}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )
        else:
            results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
            if not results:
                continue
            previous = turns[t - 1][1] if t and turns[t - 1][0] == "assistant" else []
            asked_before = {b["id"] for b in previous if b["type"] == "tool_use"}
            unknown = [r for r in results if r not in asked_before]
            if unknown:
                raise Refused(
                    f"messages.{index}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{', '.join(unknown)}. Each `tool_result` block must have a corresponding `tool_use` "
                    "block in the previous message."
                )
