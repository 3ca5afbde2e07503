"""Request translation, OpenAI API -> Ollama native API.

Owns the pure mapping of ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings``
bodies onto ``/api/chat``, ``/api/generate`` and ``/api/embed`` bodies. Bad client input raises
``InvalidRequest`` naming the parameter and the fix. Only fields Ollama understands are forwarded.

Option precedence, lowest to highest: provider ``defaults.options``, ``defaults.num_ctx``, the
client's ``options`` object, native top-level extras (``top_k``, ``num_ctx``...), then the standard
OpenAI fields (``max_tokens``, ``temperature``, ``stop``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import orjson

from corral.providers.fields import fail as _fail
from corral.providers.fields import number as _num


@dataclass(frozen=True, slots=True)
class OllamaDefaults:
    """Per-provider settings from the config, applied under every request's own values."""

    keep_alive: str | int | None = None
    num_ctx: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


# Top-level fields copied into ``options`` under the same name. frequency_penalty and
# presence_penalty are OpenAI's additive penalties, which Ollama implements natively under
# these names; they are NOT repeat_penalty (a multiplier around 1.1). Only options Ollama still
# has (api.Options): mirostat, mirostat_eta and mirostat_tau went in 0.7 (ollama#10581), and
# Ollama ignores them without a word, so they are not forwarded from the top level either.
_INT_OPTIONS: Final = ("seed", "top_k", "repeat_last_n", "num_ctx", "num_predict")
_NUMBER_OPTIONS: Final = (
    *("temperature", "top_p", "frequency_penalty", "presence_penalty"),
    *("min_p", "typical_p", "repeat_penalty"),
)
# "minimal" and OpenAI's "xhigh" become the nearest levels every level-taking model accepts.
_EFFORT_TO_THINK: Final[Mapping[str, bool | str]] = MappingProxyType(
    {"none": False, "minimal": "low", "xhigh": "high", **{e: e for e in ("low", "medium", "high", "max")}}
)


def chat_request(
    body: dict[str, Any], model: str, *, stream: bool, defaults: OllamaDefaults
) -> dict[str, Any]:
    """Translate an OpenAI chat completion request into an Ollama ``/api/chat`` body."""
    out: dict[str, Any] = {"model": model, "messages": _messages(body.get("messages")), "stream": stream}
    tools = _tools(body)
    if tools:
        out["tools"] = tools
    fmt = _format(body)
    if fmt is not None:
        out["format"] = fmt
    _common(out, body, defaults)
    think = _think(body)
    if think is not None:
        out["think"] = think
    logprobs = body.get("logprobs")
    if logprobs is not None:
        if not isinstance(logprobs, bool):
            _fail("logprobs", "logprobs must be true or false.")
        out["logprobs"] = logprobs
    top = _num(body, "top_logprobs", integral=True)
    if top is not None:
        out["top_logprobs"] = top
    return out


def generate_request(
    body: dict[str, Any], model: str, *, stream: bool, defaults: OllamaDefaults
) -> dict[str, Any]:
    """Translate an OpenAI (legacy) completion request into an Ollama ``/api/generate`` body."""
    if body.get("echo"):
        _fail("echo", "echo is not supported: Ollama returns only the generated text. Remove echo.")
    best_of = _num(body, "best_of", integral=True)
    if best_of is not None and best_of > 1:
        _fail("best_of", "best_of > 1 is not supported: Ollama generates one completion per request.")
    out: dict[str, Any] = {"model": model, "prompt": _prompt(body.get("prompt")), "stream": stream}
    suffix = body.get("suffix")
    if suffix is not None:
        if not isinstance(suffix, str):
            _fail("suffix", "suffix must be a string.")
        out["suffix"] = suffix
    for name in ("raw", "system", "images", "think", "format"):  # Ollama's own fields, as given
        if body.get(name) is not None:
            out[name] = body[name]
    _common(out, body, defaults)
    # The legacy completions API takes logprobs as the number of alternatives per token.
    logprobs = _num(body, "logprobs", integral=True)
    if logprobs is not None:
        out["logprobs"] = True
        out["top_logprobs"] = logprobs
    return out


def embed_request(body: dict[str, Any], model: str, *, defaults: OllamaDefaults) -> dict[str, Any]:
    """Translate an OpenAI embeddings request into an Ollama ``/api/embed`` body.

    ``encoding_format`` is checked here but applied on the way back (``embedding_response``).
    """
    if body.get("encoding_format") not in (None, "float", "base64"):
        _fail("encoding_format", "encoding_format must be 'float' or 'base64'.")
    out: dict[str, Any] = {"model": model, "input": _embed_input(body.get("input"))}
    dimensions = _num(body, "dimensions", integral=True)
    if dimensions is not None:
        out["dimensions"] = dimensions
    if body.get("truncate") is not None:
        out["truncate"] = body["truncate"]
    _common(out, body, defaults)
    return out


# -- shared pieces ----------------------------------------------------------------------------


def _common(out: dict[str, Any], body: dict[str, Any], defaults: OllamaDefaults) -> None:
    """Check ``n`` and add ``options`` and ``keep_alive``, the parts every endpoint shares."""
    n = _num(body, "n", integral=True)
    if n is not None and n != 1:
        _fail("n", f"n={n} is not supported: Ollama returns one choice per request; send n requests.")
    options = _options(body, defaults)
    if options:
        out["options"] = options
    keep_alive = body.get("keep_alive")
    if keep_alive is None:
        keep_alive = defaults.keep_alive
    if keep_alive is not None:
        if isinstance(keep_alive, bool) or not isinstance(keep_alive, str | int | float):
            _fail(
                "keep_alive",
                "keep_alive must be a duration string such as '10m' or a number of seconds "
                "(negative keeps the model loaded, 0 unloads it after the answer).",
            )
        out["keep_alive"] = keep_alive


def _options(body: dict[str, Any], defaults: OllamaDefaults) -> dict[str, Any]:
    options: dict[str, Any] = dict(defaults.options)
    if defaults.num_ctx is not None:
        options["num_ctx"] = defaults.num_ctx
    client = body.get("options")
    if client is not None:
        if not isinstance(client, dict):
            _fail("options", 'options must be an object of Ollama options, e.g. {"num_ctx": 8192}.')
        options.update(client)
    for name in (*_INT_OPTIONS, *_NUMBER_OPTIONS):
        value = _num(body, name, integral=name in _INT_OPTIONS)
        if value is not None:
            options[name] = value
    for name in ("max_tokens", "max_completion_tokens"):  # the newer name wins when both are sent
        limit = _num(body, name, integral=True)
        if limit is not None:
            if limit < 1:
                _fail(name, f"{name} must be a positive integer.")
            options["num_predict"] = limit
    stop = body.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if stop:
            options["stop"] = list(stop)
    elif stop is not None:
        _fail("stop", "stop must be a string or a list of strings.")
    return options


# -- chat -------------------------------------------------------------------------------------


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        _fail("messages", "messages must be a non-empty list of chat messages.")
    tool_names: dict[str, str] = {}  # tool_call id -> function name, from earlier assistant turns
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            _fail(where, f"{where} must be an object with a role and content.")
        role = msg.get("role")
        if role in ("system", "developer", "user"):
            out.append(_message("user" if role == "user" else "system", msg, where))
        elif role == "assistant":
            out.append(_assistant(msg, where, tool_names))
        elif role == "tool":
            converted = _message("tool", msg, where)
            call_id = msg.get("tool_call_id")
            if isinstance(call_id, str) and call_id:
                converted["tool_call_id"] = call_id
                if call_id in tool_names:
                    converted["tool_name"] = tool_names[call_id]
            out.append(converted)
        else:
            _fail(
                f"{where}.role",
                f"{where}.role {role!r} is not supported; use system, developer, user, assistant or tool.",
            )
    return out


def _message(role: str, msg: dict[str, Any], where: str) -> dict[str, Any]:
    text, images = _content(msg.get("content"), f"{where}.content")
    out: dict[str, Any] = {"role": role, "content": text}
    if images:
        out["images"] = images
    return out


def _assistant(msg: dict[str, Any], where: str, tool_names: dict[str, str]) -> dict[str, Any]:
    out = _message("assistant", msg, where)  # name, refusal and audio are dropped
    for key in ("reasoning_content", "reasoning"):
        thinking = msg.get(key)
        if isinstance(thinking, str) and thinking:
            out["thinking"] = thinking
            break
    raw_calls = msg.get("tool_calls")
    if raw_calls is None:
        return out
    if not isinstance(raw_calls, list):
        _fail(f"{where}.tool_calls", f"{where}.tool_calls must be a list of tool calls.")
    calls: list[dict[str, Any]] = []
    for j, call in enumerate(raw_calls):
        here = f"{where}.tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            _fail(
                here,
                f'{here} must look like {{"id": ..., "type": "function", "function": {{"name": ..., '
                '"arguments": "<JSON string>"}}.',
            )
        args = _arguments(fn.get("arguments"), f"{here}.function.arguments")
        converted: dict[str, Any] = {"function": {"index": j, "name": fn["name"], "arguments": args}}
        call_id = call.get("id")
        if isinstance(call_id, str) and call_id:
            converted["id"] = call_id
            tool_names[call_id] = fn["name"]
        calls.append(converted)
    if calls:
        out["tool_calls"] = calls
    return out


def _arguments(raw: Any, param: str) -> dict[str, Any]:
    """OpenAI sends arguments as a JSON string; Ollama wants the object itself."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        _fail(param, f"{param} must be a JSON string encoding an object.")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        _fail(param, f"{param} is not valid JSON ({exc}); send the arguments string the model produced.")
    if not isinstance(parsed, dict):
        _fail(param, f"{param} must encode a JSON object, not {type(parsed).__name__}.")
    return parsed


def _content(content: Any, where: str) -> tuple[str, list[str]]:
    """Flatten OpenAI content (string, null or parts) into Ollama's text plus base64 images."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        _fail(where, f"{where} must be a string, null or a list of content parts.")
    texts: list[str] = []
    images: list[str] = []
    for k, part in enumerate(content):
        here = f"{where}[{k}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            if not isinstance(part.get(kind), str):
                _fail(here, f"{here} is a {kind} part without a {kind} string.")
            texts.append(part[kind])
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            images.append(_image_data(url, f"{here}.image_url"))
        else:
            _fail(
                here,
                f"{here} has content part type {kind!r}, which Ollama cannot take; "
                "send text parts and image_url parts with base64 data: URLs only.",
            )
    return "\n".join(texts), images


def _image_data(url: Any, where: str) -> str:
    if not isinstance(url, str) or not url:
        _fail(where, f"{where} must carry a url.")
    if url[:5].lower() != "data:":
        _fail(
            where,
            f"{where} is a remote URL; corral does not fetch remote images. Send the image inline "
            "as a base64 data: URL, e.g. data:image/png;base64,<base64 bytes>.",
        )
    header, comma, payload = url.partition(",")
    if not comma or not header.lower().endswith(";base64") or not payload:
        _fail(where, f"{where} must be a base64 data: URL: data:<mime type>;base64,<base64 bytes>.")
    return payload


def _tools(body: dict[str, Any]) -> list[Any] | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        _fail("tools", "tools must be a list of tool definitions.")
    # Ollama cannot force or restrict a tool choice: "none" withholds the tools; "auto",
    # "required" and a named function all send them and leave the choice to the model.
    return None if body.get("tool_choice") == "none" else tools


def _format(body: dict[str, Any]) -> str | dict[str, Any] | None:
    fmt = body.get("response_format")
    if fmt is None:
        native = body.get("format")  # Ollama's own field, sent via extra_body
        return native if isinstance(native, str | dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            return "json"
        if not isinstance(schema, dict):
            param = "response_format.json_schema.schema"
            _fail(param, f"{param} must be a JSON Schema object.")
        return schema
    _fail("response_format", "response_format.type must be 'text', 'json_object' or 'json_schema'.")


def _think(body: dict[str, Any]) -> Any:
    if body.get("think") is not None:  # Ollama's own field, sent via extra_body: taken as given
        return body["think"]
    effort, param = body.get("reasoning_effort"), "reasoning_effort"
    reasoning = body.get("reasoning")
    if effort is None and isinstance(reasoning, dict):
        effort, param = reasoning.get("effort"), "reasoning.effort"
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in _EFFORT_TO_THINK:
        _fail(param, f"{param} must be one of: {', '.join(_EFFORT_TO_THINK)}; got {effort!r}.")
    return _EFFORT_TO_THINK[effort]


# -- completions and embeddings ---------------------------------------------------------------


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        _fail(
            "prompt",
            f"prompt has {len(prompt)} strings but Ollama takes one prompt per request; "
            "send one request per prompt.",
        )
    _fail("prompt", "prompt must be a string: Ollama takes text, not token arrays.")


def _embed_input(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list) and value:
        _fail("input", "input must be a string or a list of strings: Ollama embeds text only, not tokens.")
    _fail("input", "input must be a non-empty string or list of strings.")
