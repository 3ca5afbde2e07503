"""Request validation for the Ollama emulator: what Ollama refuses, and what it would silently drop.

Ollama decodes a request body into Go structs (``api/types.go`` at ollama/ollama fb307609):
a known field of the wrong JSON type is a 400 ``{"error": "json: cannot unmarshal ..."}``, as
are a ``think`` other than a bool or "low"/"medium"/"high"/"max", a ``keep_alive`` that is
neither a number nor a Go duration string, and images that are not plain base64 (a ``data:``
URL is not). ``options`` are read later (``Options.FromMap``): a known option of the wrong
type fails the request with 500 (``option "num_ctx" must be of type integer``), and so does a
``format`` other than "json" or a JSON schema object.

Ollama silently ignores unknown fields and options (it logs "invalid option provided"), so a
translation that puts ``temperature`` at the top level, or ``max_tokens`` inside ``options``,
loses the setting without an error. In strict mode (the default) the emulator refuses those
with 400, its message saying that Ollama itself would have ignored them: a wrong translation
then fails a test instead of passing unnoticed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

INT_OPTIONS = frozenset(
    {"num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch", "num_gpu",
     "main_gpu", "num_thread", "draft_num_predict"}
)  # fmt: skip
FLOAT_OPTIONS = frozenset(
    {"top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty"}
)
BOOL_OPTIONS = frozenset({"use_mmap"})
LIST_OPTIONS = frozenset({"stop"})
OPTIONS = INT_OPTIONS | FLOAT_OPTIONS | BOOL_OPTIONS | LIST_OPTIONS
THINK_LEVELS = ("high", "medium", "low", "max")
_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")


def _string(v: Any) -> bool:
    return isinstance(v, str)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _integer(v: Any) -> bool:
    return _number(v) and float(v).is_integer()


def _array(v: Any) -> bool:
    return isinstance(v, list)


def _object(v: Any) -> bool:
    return isinstance(v, dict)


def _any(v: Any) -> bool:
    return True


# Go type names as Ollama's decoding errors print them
GO_TYPE: dict[Check, str] = {
    _string: "string", _bool: "bool", _number: "float32", _integer: "int", _array: "[]T",
    _object: "map[string]interface {}", _any: "interface {}",
}  # fmt: skip

# the request fields of each endpoint (api.ChatRequest, api.GenerateRequest, api.EmbedRequest,
# api.EmbeddingRequest); options, think, keep_alive, format, messages, images, tools are checked apart
COMMON: dict[str, Check] = {"model": _string, "options": _object, "keep_alive": _any}
FIELDS: dict[str, tuple[str, dict[str, Check]]] = {
    "/api/chat": ("ChatRequest", {
        **COMMON, "messages": _array, "stream": _bool, "format": _any, "tools": _array, "think": _any,
        "truncate": _bool, "shift": _bool, "_debug_render_only": _bool, "logprobs": _bool,
        "top_logprobs": _integer,
    }),
    "/api/generate": ("GenerateRequest", {
        **COMMON, "prompt": _string, "suffix": _string, "system": _string, "template": _string,
        "context": _array, "stream": _bool, "raw": _bool, "format": _any, "images": _array, "think": _any,
        "truncate": _bool, "shift": _bool, "_debug_render_only": _bool, "logprobs": _bool,
        "top_logprobs": _integer,
    }),
    "/api/embed": ("EmbedRequest", {**COMMON, "input": _any, "truncate": _bool, "dimensions": _integer}),
    "/api/embeddings": ("EmbeddingRequest", {**COMMON, "prompt": _string}),
}  # fmt: skip
MESSAGE: dict[str, Check] = {
    "role": _string, "content": _string, "thinking": _string, "images": _array, "tool_calls": _array,
    "tool_name": _string, "tool_call_id": _string,
}  # fmt: skip


class Refused(Exception):
    """What Ollama (or, strict, the emulator) answers instead: ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number" if _integer(value) else f"number {value}"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _mismatch(struct: str, path: str, value: Any, check: Check) -> Refused:
    return Refused(
        400,
        f"json: cannot unmarshal {_json_type(value)} into Go struct field {struct}.{path} "
        f"of type {GO_TYPE[check]}",
    )


def _fields(struct: str, path: str, body: Mapping[str, Any], fields: Mapping[str, Check]) -> None:
    for name, check in fields.items():
        value = body.get(name)
        if value is not None and not check(value):
            raise _mismatch(struct, f"{path}{name}", value, check)


def check_request(path: str, body: Mapping[str, Any], *, strict: bool = True) -> None:
    """Raise ``Refused`` as Ollama's decoding of the request body would (400), before routing."""
    struct, fields = FIELDS[path]
    _fields(struct, "", body, fields)
    if strict:
        misplaced = sorted(OPTIONS & body.keys())
        if misplaced:
            raise Refused(
                400,
                f"emulator: {', '.join(misplaced)} must go inside 'options' "
                "(Ollama ignores them at the top level without an error)",
            )
        unknown = sorted(body.keys() - fields.keys() - {"name"})
        if unknown:
            raise Refused(400, f"emulator: unknown field(s) {', '.join(unknown)} (Ollama ignores them)")
    _think(body.get("think"))
    _keep_alive(body.get("keep_alive"))
    _images(struct, "images", body.get("images"))
    for message in body.get("messages") or ():
        _message(struct, message, strict=strict)
    for tool in body.get("tools") or ():
        _tool(struct, tool)
    if path == "/api/chat" and body.get("top_logprobs") is not None and not 0 <= body["top_logprobs"] <= 20:
        raise Refused(400, "top_logprobs must be between 0 and 20")


def check_input(body: Mapping[str, Any]) -> None:
    """/api/embed's ``input``: a string or a list of strings (400 "invalid input type")."""
    value = body.get("input")
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Refused(400, "invalid input type")


def check_options(body: Mapping[str, Any], *, strict: bool = True) -> None:
    """Raise ``Refused`` as Ollama does when it reads ``options`` and ``format`` (500)."""
    for name, value in (body.get("options") or {}).items():
        if name not in OPTIONS:
            if strict:
                raise Refused(
                    400, f'emulator: unknown option {name!r} (Ollama ignores it: "invalid option provided")'
                )
            continue
        if value is None:
            continue
        if name in INT_OPTIONS and not _number(value):
            raise Refused(500, f'option "{name}" must be of type integer')
        if name in FLOAT_OPTIONS and not _number(value):
            raise Refused(500, f'option "{name}" must be of type float32')
        if name in BOOL_OPTIONS and not _bool(value):
            raise Refused(500, f'option "{name}" must be of type boolean')
        if name in LIST_OPTIONS:
            if not _array(value):
                raise Refused(500, f'option "{name}" must be of type array')
            if not all(isinstance(item, str) for item in value):
                raise Refused(500, f'option "{name}" must be of an array of strings')
    fmt = body.get("format")
    if fmt not in (None, "", "json") and not isinstance(fmt, dict):
        raise Refused(500, f'invalid format: {fmt!r}; expected "json" or a valid JSON Schema object')


def _think(value: Any) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if value not in THINK_LEVELS:
            raise Refused(
                400,
                f'invalid think value: "{value}" (must be "high", "medium", "low", "max", true, or false)',
            )
        return
    raise Refused(400, 'think must be a boolean or string ("high", "medium", "low", "max", true, or false)')


def _keep_alive(value: Any) -> None:
    if value is None or _number(value):
        return
    if isinstance(value, str):
        if value != "0" and not _DURATION.match(value):
            raise Refused(400, f'time: invalid duration "{value}"')
        return
    go = (
        "bool"
        if isinstance(value, bool)
        else "[]interface {}"
        if isinstance(value, list)
        else "map[string]interface {}"
    )
    raise Refused(400, f"Unsupported type: '{go}'")


def _images(struct: str, path: str, value: Any) -> None:
    for index, image in enumerate(value or ()):
        if not isinstance(image, str):
            raise _mismatch(struct, f"{path}", image, _string)
        try:
            base64.b64decode(image.replace("\n", "").replace("\r", ""), validate=True)
        except (binascii.Error, ValueError):
            bad = next((i for i, ch in enumerate(image) if ch not in _B64), len(image))
            raise Refused(400, f"illegal base64 data at input byte {bad} (image {index})") from None


_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n")


def _message(struct: str, message: Any, *, strict: bool) -> None:
    if not isinstance(message, dict):
        raise _mismatch(struct, "messages", message, _object)
    _fields("Message", "messages.", message, MESSAGE)
    if strict:
        unknown = sorted(message.keys() - MESSAGE.keys())
        if unknown:
            raise Refused(
                400, f"emulator: unknown message field(s) {', '.join(unknown)} (Ollama ignores them)"
            )
    _images("Message", "messages.images", message.get("images"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise _mismatch("ToolCall", "messages.tool_calls.function", function, _object)
        _fields(
            "ToolCallFunction",
            "messages.tool_calls.function.",
            function,
            {"name": _string, "index": _integer},
        )
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise Refused(
                400,
                f"json: cannot unmarshal {_json_type(arguments)} into Go struct field "
                "ToolCallFunction.messages.tool_calls.function.arguments of type map[string]interface {}",
            )


def _tool(struct: str, tool: Any) -> None:
    if not isinstance(tool, dict):
        raise _mismatch(struct, "tools", tool, _object)
    _fields("Tool", "tools.", tool, {"type": _string, "function": _object})
    function = tool.get("function") or {}
    _fields("ToolFunction", "tools.function.", function, {"name": _string, "description": _string,
                                                          "parameters": _object})  # fmt: skip
