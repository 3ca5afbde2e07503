"""Anthropic Messages requests and the model, both directions.

``read`` takes a ``POST /v1/messages`` body (the surface): ``system`` (a string or text
blocks) becomes the first system message, ``role: "system"`` messages (Claude Code sends them
mid-conversation) stay system messages, a user turn's ``tool_result`` blocks become ``tool``
messages (in order, the rest of the turn after them; ``is_error`` prefixes "Error: "),
``tool_use`` blocks become the assistant's tool calls (their ids kept), ``thinking`` blocks its
reasoning (the signature is only meaningful to Anthropic and dropped). ``tools`` become
function definitions; ``tool_choice`` ``any`` / ``tool`` are kept as a forced choice, which an
upstream that cannot force one refuses; ``none`` withholds the tools. ``thinking`` enabled is
reasoning on (``budget_tokens`` is not a level any other API has: the upstream's default depth),
disabled is off, adaptive (what Claude Code sends) leaves it to the model: an Ollama model that
cannot think refuses ``think: true``. Fields only Anthropic's own service uses (``cache_control``,
``context_management``, ``output_config.effort``, ``metadata``, betas' fields) are accepted and
not forwarded.

``write`` makes the body for a Messages upstream (the ``anthropic`` provider type).
"""

from __future__ import annotations

from typing import Any, Final

from corral.conversation.call import Endpoint
from corral.conversation.fields import fail as _fail
from corral.conversation.fields import number as _num
from corral.conversation.request import (
    Image,
    Message,
    Part,
    Request,
    ResponseFormat,
    Sampling,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
)

DEFAULT_MAX_TOKENS: Final = 4096  # what a Messages upstream gets when the client sent no limit
# reasoning level -> thinking budget for a Messages upstream
_BUDGETS: Final = {"low": 1024, "medium": 4096, "high": 16384, "max": 32000}
_IGNORED_BLOCKS: Final = frozenset({"redacted_thinking"})


def read(endpoint: Endpoint, body: dict[str, Any], *, count_only: bool = False) -> Request:
    """A Messages body in the model. ``count_only``: a ``count_tokens`` body (no ``max_tokens``)."""
    req = Request(endpoint=Endpoint.CHAT)
    if not count_only:
        limit = _num(body, "max_tokens", integral=True)
        if limit is None:
            _fail("max_tokens", "max_tokens is required: the most tokens to generate, e.g. 1024.")
        if limit < 0:
            _fail("max_tokens", "max_tokens must be 0 or more.")
        req.sampling = _sampling(body, limit)
    system = body.get("system")
    if system is not None:
        text = _system_text(system, "system")
        if text:
            req.messages.append(Message("system", [Text(text)]))
    req.messages.extend(_messages(body.get("messages")))
    _tools(req, body)
    req.reasoning = _thinking(body.get("thinking"))
    req.format = _format(body.get("output_config"))
    return req


def _sampling(body: dict[str, Any], limit: int) -> Sampling:
    s = Sampling(max_tokens=limit)
    s.temperature = _num(body, "temperature", integral=False)
    s.top_p = _num(body, "top_p", integral=False)
    s.top_k = _num(body, "top_k", integral=True)
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(x, str) for x in stops):
            _fail("stop_sequences", "stop_sequences must be a list of strings.")
        s.stop = list(stops) or None
    return s


def _system_text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        _fail(where, f"{where} must be a string or a list of text blocks.")
    texts = []
    for i, block in enumerate(value):
        if (
            not isinstance(block, dict)
            or block.get("type") != "text"
            or not isinstance(block.get("text"), str)
        ):
            _fail(f"{where}.{i}", f'{where}.{i} must be a text block: {{"type": "text", "text": ...}}.')
        texts.append(block["text"])
    return "\n".join(texts)


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        _fail("messages", "messages must be a non-empty list of {role, content} objects.")
    out: list[Message] = []
    tool_names: dict[str, str] = {}  # tool_use id -> tool name, from earlier assistant turns
    for i, msg in enumerate(raw):
        where = f"messages.{i}"
        if not isinstance(msg, dict):
            _fail(where, f"{where} must be an object with 'role' and 'content'.")
        role, content = msg.get("role"), msg.get("content")
        if role == "system":
            out.append(Message("system", [Text(_system_text(content, f"{where}.content"))]))
        elif role == "assistant":
            out.append(_assistant(_blocks(content, where), where, tool_names))
        elif role == "user":
            out.extend(_user(_blocks(content, where), where, tool_names))
        else:
            _fail(f"{where}.role", f"{where}.role must be 'user', 'assistant' or 'system', got {role!r}.")
    return out


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        _fail(f"{where}.content", f"{where}.content must be a string or a list of content blocks.")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            _fail(f"{where}.content.{j}", f"{where}.content.{j} must be a content block with a 'type'.")
    return content


def _user(blocks: list[dict[str, Any]], where: str, tool_names: dict[str, str]) -> list[Message]:
    results: list[Message] = []
    parts: list[Part] = []
    for j, block in enumerate(blocks):
        here, kind = f"{where}.content.{j}", block["type"]
        if kind == "tool_result":
            results.append(_tool_result(block, here, tool_names))
        elif kind == "text":
            parts.append(Text(_text(block, here)))
        elif kind == "image":
            parts.append(_image(block.get("source"), here))
        elif kind not in _IGNORED_BLOCKS:
            _unsupported(kind, here)
    return results + ([Message("user", parts)] if parts else [])


def _tool_result(block: dict[str, Any], where: str, tool_names: dict[str, str]) -> Message:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        _fail(f"{where}.tool_use_id", f"{where}.tool_use_id must name the tool_use block it answers.")
    content = block.get("content")
    parts: list[Part] = []
    if isinstance(content, str):
        parts.append(Text(content))
    elif isinstance(content, list):
        for k, inner in enumerate(content):
            here = f"{where}.content.{k}"
            kind = inner.get("type") if isinstance(inner, dict) else None
            if kind == "text":
                parts.append(Text(_text(inner, here)))
            elif kind == "image":
                parts.append(_image(inner.get("source"), here))
            else:
                _unsupported(str(kind), here)
    elif content is not None:
        _fail(f"{where}.content", f"{where}.content must be a string or a list of text and image blocks.")
    if block.get("is_error") is True:
        text = "\n".join(p.text for p in parts if isinstance(p, Text))
        parts = [Text(f"Error: {text}"), *(p for p in parts if isinstance(p, Image))]
    message = Message("tool", parts or [Text("")], tool_call_id=call_id)
    message.tool_name = tool_names.get(call_id)
    return message


def _assistant(blocks: list[dict[str, Any]], where: str, tool_names: dict[str, str]) -> Message:
    message = Message("assistant", [])
    thoughts: list[str] = []
    for j, block in enumerate(blocks):
        here, kind = f"{where}.content.{j}", block["type"]
        if kind == "text":
            message.content.append(Text(_text(block, here)))
        elif kind == "thinking":
            thought = block.get("thinking")
            if isinstance(thought, str) and thought:
                thoughts.append(thought)
        elif kind == "tool_use":
            name, call_id, args = block.get("name"), block.get("id"), block.get("input", {})
            if not isinstance(name, str) or not isinstance(call_id, str) or not isinstance(args, dict):
                _fail(
                    here,
                    f"{here} must be a tool_use block with string 'id' and 'name' and an object 'input'.",
                )
            message.tool_calls.append(ToolCall(name, args, call_id, len(message.tool_calls)))
            tool_names[call_id] = name
        elif kind not in _IGNORED_BLOCKS:
            _unsupported(kind, here)
    message.reasoning = "\n".join(thoughts)
    return message


def _text(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        _fail(f"{where}.text", f"{where}.text must be a string.")
    return text


def _image(source: Any, where: str) -> Image:
    if not isinstance(source, dict) or source.get("type") != "base64":
        _fail(
            f"{where}.source",
            f'{where}.source must be base64 image data ({{"type": "base64", "media_type": ..., '
            '"data": ...}}); corral does not fetch images from URLs.',
        )
    data = source.get("data")
    if not isinstance(data, str) or not data:
        _fail(f"{where}.source.data", f"{where}.source.data must be the image's base64 bytes.")
    media = source.get("media_type")
    return Image(data, media if isinstance(media, str) else None)


def _unsupported(kind: str, where: str) -> None:
    _fail(
        where,
        f"{where}: content blocks of type {kind!r} are not supported here; send text, image, "
        "tool_use, tool_result or thinking blocks.",
    )


def _tools(req: Request, body: dict[str, Any]) -> None:
    raw = body.get("tools")
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if choice is not None and kind not in ("auto", "any", "tool", "none"):
        _fail("tool_choice", "tool_choice.type must be 'auto', 'any', 'tool' or 'none'.")
    if raw is None:
        if kind in ("any", "tool"):
            _fail("tool_choice", f"tool_choice {kind!r} needs tools to choose from.")
        return
    if not isinstance(raw, list):
        _fail("tools", "tools must be a list of tool definitions.")
    tools: list[Tool] = []
    for i, tool in enumerate(raw):
        where = f"tools.{i}"
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            _fail(where, f"{where} must be a tool with a 'name' and an 'input_schema'.")
        if tool.get("type") not in (None, "custom"):
            _fail(
                f"{where}.type",
                f"{where} is Anthropic's server tool {tool.get('type')!r}, which only "
                "Anthropic runs; define it as a custom tool with an input_schema.",
            )
        fn: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        schema = tool.get("input_schema")
        fn["parameters"] = schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
        tools.append(Tool({"type": "function", "function": fn}))
    if kind == "none":
        return
    req.tools = tools
    if kind == "any":
        req.tool_choice = ToolChoice(required=True)
    elif kind == "tool":
        name = choice.get("name") if isinstance(choice, dict) else None
        if name not in {t.name for t in tools}:
            _fail("tool_choice.name", f"tool_choice.name must be one of the tools, got {name!r}.")
        req.tool_choice = ToolChoice(required=True, name=name)
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
        req.parallel_tool_calls = False


def _thinking(value: Any) -> bool | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "enabled":
        return True
    if kind == "adaptive":  # the model decides: its default, so a model that cannot think still answers
        return None
    if kind == "disabled":
        return False
    _fail("thinking.type", "thinking.type must be 'enabled', 'adaptive' or 'disabled'.")


def _format(config: Any) -> ResponseFormat | None:
    fmt = config.get("format") if isinstance(config, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        _fail(
            "output_config.format", 'output_config.format must be {"type": "json_schema", "schema": {...}}.'
        )
    return ResponseFormat("json_schema", fmt["schema"])


def thinking_omitted(body: dict[str, Any]) -> bool:
    """The client asked for its thinking blocks without their text (``display: omitted``)."""
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("display") == "omitted"


# -- writing a request for a Messages upstream --------------------------------------------------


def write(req: Request, model: str) -> dict[str, Any]:
    """The ``POST /v1/messages`` body a Messages upstream gets for ``req``, as ``model``."""
    s = req.sampling
    limit = s.max_tokens if s.max_tokens is not None and s.max_tokens > 0 else DEFAULT_MAX_TOKENS
    out: dict[str, Any] = {"model": model, "max_tokens": limit, "stream": req.stream}
    messages = list(req.messages)
    head: list[str] = []
    while messages and messages[0].role == "system":
        head.append(messages.pop(0).text())
    if head:
        out["system"] = "\n".join(head)
    out["messages"] = _turns(messages)
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(s, name)
        if value is not None:
            out[name] = value
    if s.stop:
        out["stop_sequences"] = list(s.stop)
    if req.tools:
        out["tools"] = [_tool(t) for t in req.tools]
        choice: dict[str, Any] | None = None
        if req.tool_choice is not None:
            forced = req.tool_choice.name
            choice = {"type": "tool", "name": forced} if forced else {"type": "any"}
        if req.parallel_tool_calls is False:
            choice = (choice or {"type": "auto"}) | {"disable_parallel_tool_use": True}
        if choice is not None:
            out["tool_choice"] = choice
    if req.reasoning is not None and req.reasoning is not False:
        budget = _BUDGETS["medium" if req.reasoning is True else req.reasoning]
        if limit > _BUDGETS["low"]:
            out["thinking"] = {"type": "enabled", "budget_tokens": min(budget, limit - 1)}
    if req.format is not None and req.format.kind == "json_schema" and req.format.schema is not None:
        out["output_config"] = {"format": {"type": "json_schema", "schema": req.format.schema}}
    return out


def _tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    out["input_schema"] = tool.parameters or {"type": "object", "properties": {}}
    return out


def _turns(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as alternating turns: tool results go into a user turn, consecutive turns of one
    role are joined."""
    turns: list[dict[str, Any]] = []
    for m in messages:
        role = "user" if m.role in ("user", "tool") else m.role
        blocks = _blocks_of(m)
        if role == "system":
            turns.append({"role": "system", "content": m.text()})
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks_of(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        text = m.text()
        images = m.images()
        if not images:
            return [{"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": text}]
        content = [{"type": "text", "text": text}, *map(_image_block, images)]
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": content}]
    blocks: list[dict[str, Any]] = []
    for part in m.content:
        if isinstance(part, Text):
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        else:
            blocks.append(_image_block(part))
    for c in m.tool_calls:
        call_id = c.id or f"toolu_corral{c.index:02d}"
        blocks.append({"type": "tool_use", "id": call_id, "name": c.name, "input": c.arguments_object()})
    return blocks


def _image_block(image: Image) -> dict[str, Any]:
    from corral.conversation.openai.requests import data_url  # the one place media types are sniffed

    url = data_url(image)
    media = url[5 : url.index(";")] if url.startswith("data:") and ";" in url else "image/png"
    data = url.split(",", 1)[1] if "," in url else image.data
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
