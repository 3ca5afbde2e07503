"""OpenAI Responses requests into the model (the ``/v1/responses`` surface; stateless).

``input`` is a string (one user message) or items: messages (``developer`` is ``system``; parts
``input_text``, ``output_text``, ``input_image`` as a data URL, ``refusal``), ``function_call``
items (the assistant's tool calls, arguments from their JSON text, ids from ``call_id``) and
``function_call_output`` items (tool results, their function named from the call). ``reasoning``
items are dropped: their content is encrypted, for OpenAI only. ``instructions`` is the first
system message. Function tools become definitions; other tool types (Codex sends ``namespace``
and ``web_search``) cannot run on another API and are dropped. ``reasoning.effort`` is the
reasoning level, ``text.format`` the response format, ``max_output_tokens`` the limit.

corral keeps no responses: ``previous_response_id``, ``conversation``, ``background`` and
``store: true`` are refused, saying how to send the whole conversation instead.
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
    Reasoning,
    Request,
    ResponseFormat,
    Sampling,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
)

_STATELESS: Final = (
    "corral is stateless: it keeps no responses or conversations. Send the whole conversation in "
    "'input' (the earlier messages and every function_call and function_call_output item) and "
    "leave out {field}"
)
_EFFORTS: Final[dict[str, Reasoning]] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}
_TEXT_PARTS: Final = ("input_text", "output_text", "text")


def read(endpoint: Endpoint, body: dict[str, Any]) -> Request:
    for name in ("previous_response_id", "conversation"):
        if body.get(name) is not None:
            _fail(name, _STATELESS.format(field=f"'{name}'."))
    if body.get("store") is True:
        _fail("store", _STATELESS.format(field="'store' (or set it to false)."))
    if body.get("background") is True:
        _fail("background", _STATELESS.format(field="'background': corral answers while you wait."))
    req = Request(endpoint=Endpoint.CHAT)
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            _fail("instructions", "instructions must be a string.")
        if instructions:
            req.messages.append(Message("system", [Text(instructions)]))
    req.messages.extend(_items(body.get("input")))
    limit = _num(body, "max_output_tokens", integral=True)
    if limit is not None and limit < 1:
        _fail("max_output_tokens", "max_output_tokens must be a positive integer.")
    req.sampling = Sampling(
        max_tokens=limit,
        temperature=_num(body, "temperature", integral=False),
        top_p=_num(body, "top_p", integral=False),
    )
    _tools(req, body)
    req.reasoning = _reasoning(body.get("reasoning"))
    req.format = _format(body.get("text"))
    return req


def _items(raw: Any) -> list[Message]:
    if isinstance(raw, str):
        return [Message("user", [Text(raw)])]
    if not isinstance(raw, list) or not raw:
        _fail("input", "input must be a string or a non-empty list of items.")
    out: list[Message] = []
    names: dict[str, str] = {}  # call_id -> function name
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            _fail(where, f"{where} must be an item object.")
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, where))
        elif kind == "function_call":
            call = _call(item, where)
            names[call.id or ""] = call.name
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and (last.tool_calls or not last.content):
                call.index = len(last.tool_calls)
                last.tool_calls.append(call)
            else:
                out.append(Message("assistant", [], tool_calls=[call]))
        elif kind == "function_call_output":
            out.append(_output(item, where, names))
        elif kind != "reasoning":
            _fail(
                f"{where}.type",
                f"{where}.type {kind!r} is not supported; send message, function_call, "
                "function_call_output or reasoning items.",
            )
    return out


def _message(item: dict[str, Any], where: str) -> Message:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        _fail(f"{where}.role", f"{where}.role must be user, assistant, system or developer, got {role!r}.")
    content = item.get("content")
    parts: list[Part] = []
    if isinstance(content, str):
        parts.append(Text(content))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            parts.extend(_part(part, f"{where}.content[{j}]"))
    else:
        _fail(f"{where}.content", f"{where}.content must be a string or a list of content parts.")
    return Message("system" if role == "developer" else role, parts)


def _part(part: Any, where: str) -> list[Part]:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in _TEXT_PARTS:
        text = part.get("text")
        if not isinstance(text, str):
            _fail(f"{where}.text", f"{where}.text must be a string.")
        return [Text(text)]
    if kind == "refusal":
        return [Text(str(part.get("refusal") or ""))]
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
            _fail(
                f"{where}.image_url",
                f"{where}.image_url must be a data: URL with the image inline; "
                "corral does not fetch images from URLs or files.",
            )
        head, data = url.split(",", 1)
        media = head[5:].split(";", 1)[0] or None
        return [Image(data, media)]
    _fail(f"{where}.type", f"{where}.type {kind!r} is not supported; send input_text or input_image parts.")


def _call(item: dict[str, Any], where: str) -> ToolCall:
    name, call_id, args = item.get("name"), item.get("call_id"), item.get("arguments")
    if not isinstance(name, str) or not isinstance(call_id, str) or not isinstance(args, str):
        _fail(where, f"{where} must be a function_call with string 'call_id', 'name' and 'arguments'.")
    return ToolCall(name, args, call_id)


def _output(item: dict[str, Any], where: str, names: dict[str, str]) -> Message:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        _fail(f"{where}.call_id", f"{where}.call_id must name the function_call it answers.")
    output = item.get("output")
    parts: list[Part] = []
    if isinstance(output, str):
        parts.append(Text(output))
    elif isinstance(output, list):
        for j, part in enumerate(output):
            parts.extend(_part(part, f"{where}.output[{j}]"))
    else:
        _fail(f"{where}.output", f"{where}.output must be a string or a list of content parts.")
    message = Message("tool", parts or [Text("")], tool_call_id=call_id)
    message.tool_name = names.get(call_id)
    return message


def _tools(req: Request, body: dict[str, Any]) -> None:
    raw = body.get("tools")
    choice = body.get("tool_choice")
    if raw is not None and not isinstance(raw, list):
        _fail("tools", "tools must be a list of tool definitions.")
    tools: list[Tool] = []
    for i, tool in enumerate(raw or []):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue  # built-in tools (web_search, namespace...) need OpenAI's servers
        if not isinstance(tool.get("name"), str):
            _fail(f"tools[{i}].name", f"tools[{i}] must have a string 'name'.")
        fn: dict[str, Any] = {"name": tool["name"]}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        if isinstance(tool.get("parameters"), dict):
            fn["parameters"] = tool["parameters"]
        tools.append(Tool({"type": "function", "function": fn}))
    if choice == "none" or not tools:
        return
    req.tools = tools
    if choice == "required":
        req.tool_choice = ToolChoice(required=True)
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if name not in {t.name for t in tools}:
            _fail("tool_choice", f"tool_choice names {name!r}, which is not one of the function tools.")
        req.tool_choice = ToolChoice(required=True, name=name)
    elif choice not in (None, "auto") and not isinstance(choice, dict):
        _fail(
            "tool_choice",
            "tool_choice must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...}.",
        )
    if body.get("parallel_tool_calls") is False:
        req.parallel_tool_calls = False


def _reasoning(value: Any) -> Reasoning | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        _fail("reasoning", 'reasoning must be an object such as {"effort": "low"}.')
    effort = value.get("effort")
    if effort is None:
        return None
    if effort not in _EFFORTS:
        _fail("reasoning.effort", f"reasoning.effort must be one of: {', '.join(_EFFORTS)}; got {effort!r}.")
    return _EFFORTS[effort]


def _format(text: Any) -> ResponseFormat | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json")
    if kind == "json_schema" and isinstance(fmt.get("schema"), dict):
        name = fmt.get("name") if isinstance(fmt.get("name"), str) else None
        strict = fmt.get("strict") if isinstance(fmt.get("strict"), bool) else None
        return ResponseFormat("json_schema", fmt["schema"], name, strict)
    _fail(
        "text.format",
        'text.format must be {"type": "text"}, {"type": "json_object"} or '
        '{"type": "json_schema", "name": ..., "schema": {...}}.',
    )
