"""OpenAI requests and the model: ``read`` a client's ``/v1/chat/completions``,
``/v1/completions`` or ``/v1/embeddings`` body into a ``Request``; ``write`` a ``Request`` as the
body an OpenAI-compatible upstream takes.

``read`` checks what the model cannot carry or an upstream of another API could not take, with
an ``InvalidRequest`` naming the parameter and the fix: one choice per request (``n``), text and
inline images only (no remote image URLs: corral does not fetch them), no ``echo`` or
``best_of``. It also takes the Ollama fields OpenAI clients send along (``extra_body``):
``options``, ``keep_alive``, ``think``, ``format``, and top-level ``top_k``, ``num_ctx``... .

``write`` makes the decisions an OpenAI upstream needs: a completion without ``raw`` or a
``suffix`` goes to ``/chat/completions`` (Ollama applies the model's chat template to a
completion prompt, which only the upstream's chat endpoint reproduces), ``system`` becomes a
system message and images image parts; sampling options OpenAI lacks (``top_k``, ``min_p``,
``repeat_penalty`` as vLLM's ``repetition_penalty``) are sent only when set; a stream always asks
for its usage (``stream_options.include_usage``), so corral can count it.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import orjson

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

# "minimal" and OpenAI's "xhigh" become the nearest levels every level-taking model accepts.
_EFFORTS: Final[Mapping[str, Reasoning]] = MappingProxyType(
    {
        "none": False,
        "minimal": "low",
        "low": "low",
        "medium": "medium",
        "high": "high",
        "xhigh": "high",
        "max": "max",
    }
)
_TO_EFFORT: Final[Mapping[str, str]] = MappingProxyType(
    {"low": "low", "medium": "medium", "high": "high", "max": "high"}
)
# Top-level fields read into sampling, as Ollama names them (OpenAI's own and Ollama's extras).
_INTS: Final = ("seed", "top_k", "repeat_last_n")
_NUMBERS: Final = (
    *("temperature", "top_p", "frequency_penalty", "presence_penalty"),
    *("min_p", "typical_p", "repeat_penalty"),
)
_SAMPLING_KEYS: Final = frozenset(
    {*_INTS, *_NUMBERS, "num_predict", "max_tokens", "max_completion_tokens", "stop"}
)
_NATIVE_COMPLETION: Final = ("raw", "system", "images", "think", "format")  # Ollama's, taken as given


# -- reading a client's request ---------------------------------------------------------------


def read(endpoint: Endpoint, body: dict[str, Any]) -> Request:
    """The model of an OpenAI client's request body (``endpoint`` says which API it came to)."""
    if endpoint is Endpoint.CHAT:
        return _read_chat(body)
    if endpoint is Endpoint.COMPLETION:
        return _read_completion(body)
    return _read_embedding(body)


def _read_chat(body: dict[str, Any]) -> Request:
    req = Request(Endpoint.CHAT, stream=body.get("stream") is True, messages=_messages(body.get("messages")))
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            _fail("tools", "tools must be a list of tool definitions.")
        # Ollama cannot force or restrict a tool choice: "none" withholds the tools; "auto",
        # "required" and a named function all send them and leave the choice to the model.
        if body.get("tool_choice") != "none":
            req.tools = [Tool(t) for t in tools]
        choice = body.get("tool_choice")
        if choice == "required":  # kept for upstreams that can force it (not strict: see above)
            req.tool_choice = ToolChoice(strict=False)
        elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
            req.tool_choice = ToolChoice(name=choice["function"]["name"], strict=False)
    req.format = _format(body)
    if req.format is None:
        native = body.get("format")  # Ollama's own field, sent via extra_body
        if isinstance(native, str | dict):
            req.native["format"] = native
    _common(req, body)
    if body.get("think") is not None:  # Ollama's own field, sent via extra_body: taken as given
        req.native["think"] = body["think"]
    else:
        req.reasoning = _reasoning(body)
    logprobs = body.get("logprobs")
    if logprobs is not None:
        if not isinstance(logprobs, bool):
            _fail("logprobs", "logprobs must be true or false.")
        req.logprobs = logprobs
    req.top_logprobs = _num(body, "top_logprobs", integral=True)
    return req


def _read_completion(body: dict[str, Any]) -> Request:
    if body.get("echo"):
        _fail("echo", "echo is not supported: Ollama returns only the generated text. Remove echo.")
    best_of = _num(body, "best_of", integral=True)
    if best_of is not None and best_of > 1:
        _fail("best_of", "best_of > 1 is not supported: Ollama generates one completion per request.")
    req = Request(Endpoint.COMPLETION, stream=body.get("stream") is True, prompt=_prompt(body.get("prompt")))
    suffix = body.get("suffix")
    if suffix is not None:
        if not isinstance(suffix, str):
            _fail("suffix", "suffix must be a string.")
        req.suffix = suffix
    for name in _NATIVE_COMPLETION:
        if body.get(name) is not None:
            req.native[name] = body[name]
    _common(req, body)
    # The legacy completions API takes logprobs as the number of alternatives per token.
    logprobs = _num(body, "logprobs", integral=True)
    if logprobs is not None:
        req.logprobs = True
        req.top_logprobs = logprobs
    return req


def _read_embedding(body: dict[str, Any]) -> Request:
    fmt = body.get("encoding_format")
    if fmt not in (None, "float", "base64"):
        _fail("encoding_format", "encoding_format must be 'float' or 'base64'.")
    req = Request(Endpoint.EMBEDDING, input=_embed_input(body.get("input")), encoding_format=fmt)
    req.dimensions = _num(body, "dimensions", integral=True)
    req.truncate = body.get("truncate")
    _common(req, body)
    return req


def _common(req: Request, body: dict[str, Any]) -> None:
    """``n``, the sampling options, ``options``, ``keep_alive`` and the stream's usage flag."""
    n = _num(body, "n", integral=True) if "n" in body else None
    if n is not None and n != 1:
        _fail("n", f"n={n} is not supported: Ollama returns one choice per request; send n requests.")
    options = body.get("options")
    if options is not None:
        if not isinstance(options, dict):
            _fail("options", 'options must be an object of Ollama options, e.g. {"num_ctx": 8192}.')
        req.options = options
    _sampling(req.sampling, body)
    if "num_ctx" in body:
        req.num_ctx = _num(body, "num_ctx", integral=True)
    keep_alive = body.get("keep_alive")
    if keep_alive is not None:
        if isinstance(keep_alive, bool) or not isinstance(keep_alive, str | int | float):
            _fail(
                "keep_alive",
                "keep_alive must be a duration string such as '10m' or a number of seconds "
                "(negative keeps the model loaded, 0 unloads it after the answer).",
            )
        req.keep_alive = keep_alive
    stream_options = body.get("stream_options")
    req.include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True


def _sampling(s: Sampling, body: dict[str, Any]) -> None:
    """Fill ``s`` from the body's sampling fields (most bodies carry none or one or two)."""
    present = _SAMPLING_KEYS.intersection(body)
    if not present:
        return
    for name in _INTS:
        if name in present:
            setattr(s, name, _num(body, name, integral=True))
    if "num_predict" in present:
        s.max_tokens = _num(body, "num_predict", integral=True)
    for name in _NUMBERS:
        if name in present:
            setattr(s, name, _num(body, name, integral=False))
    for name in ("max_tokens", "max_completion_tokens"):  # the newer name wins when both are sent
        limit = _num(body, name, integral=True) if name in present else None
        if limit is not None:
            if limit < 1:
                _fail(name, f"{name} must be a positive integer.")
            s.max_tokens = limit
    stop = body.get("stop")
    if isinstance(stop, str):
        s.stop = [stop]
    elif isinstance(stop, list) and all(isinstance(x, str) for x in stop):
        if stop:
            s.stop = list(stop)
    elif stop is not None:
        _fail("stop", "stop must be a string or a list of strings.")


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        _fail("messages", "messages must be a non-empty list of chat messages.")
    tool_names: dict[str, str] = {}  # tool_call id -> function name, from earlier assistant turns
    out: list[Message] = []
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict):
            _fail(f"messages[{i}]", f"messages[{i}] must be an object with a role and content.")
        role = msg.get("role")
        content = msg.get("content")
        if role == "user" and type(content) is str:  # the usual message: no more to check
            out.append(Message("user", [Text(content)]))
            continue
        where = f"messages[{i}]"
        if role in ("system", "developer", "user"):
            out.append(Message("user" if role == "user" else "system", _content(msg.get("content"), where)))
        elif role == "assistant":
            out.append(_assistant(msg, where, tool_names))
        elif role == "tool":
            result = Message("tool", _content(msg.get("content"), where))
            call_id = msg.get("tool_call_id")
            if isinstance(call_id, str) and call_id:
                result.tool_call_id = call_id
                result.tool_name = tool_names.get(call_id)
            out.append(result)
        else:
            _fail(
                f"{where}.role",
                f"{where}.role {role!r} is not supported; use system, developer, user, assistant or tool.",
            )
    return out


def _assistant(msg: dict[str, Any], where: str, tool_names: dict[str, str]) -> Message:
    out = Message("assistant", _content(msg.get("content"), where))  # name, refusal and audio are dropped
    for key in ("reasoning_content", "reasoning"):
        thinking = msg.get(key)
        if isinstance(thinking, str) and thinking:
            out.reasoning = thinking
            break
    raw_calls = msg.get("tool_calls")
    if raw_calls is None:
        return out
    if not isinstance(raw_calls, list):
        _fail(f"{where}.tool_calls", f"{where}.tool_calls must be a list of tool calls.")
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
        call_id = call.get("id")
        converted = ToolCall(fn["name"], args, index=j)
        if isinstance(call_id, str) and call_id:
            converted.id = call_id
            tool_names[call_id] = fn["name"]
        out.tool_calls.append(converted)
    return out


def _arguments(raw: Any, param: str) -> dict[str, Any]:
    """OpenAI sends arguments as a JSON string; the model (and Ollama) wants the object itself."""
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


def _content(content: Any, where: str) -> list[Part]:
    """OpenAI content (string, null or parts) as the model's parts: text and inline images."""
    where = f"{where}.content"
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)]
    if not isinstance(content, list):
        _fail(where, f"{where} must be a string, null or a list of content parts.")
    parts: list[Part] = []
    for k, part in enumerate(content):
        here = f"{where}[{k}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            if not isinstance(part.get(kind), str):
                _fail(here, f"{here} is a {kind} part without a {kind} string.")
            parts.append(Text(part[kind]))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_image(url, f"{here}.image_url"))
        else:
            _fail(
                here,
                f"{here} has content part type {kind!r}, which Ollama cannot take; "
                "send text parts and image_url parts with base64 data: URLs only.",
            )
    return parts


def _image(url: Any, where: str) -> Image:
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
    return Image(payload, header[5:-7] or None)


def _format(body: dict[str, Any]) -> ResponseFormat | None:
    fmt = body.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json")
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            return ResponseFormat("json")
        if not isinstance(schema, dict):
            param = "response_format.json_schema.schema"
            _fail(param, f"{param} must be a JSON Schema object.")
        assert isinstance(spec, dict)
        name, strict = spec.get("name"), spec.get("strict")
        return ResponseFormat(
            "json_schema",
            schema,
            name if isinstance(name, str) else None,
            strict if isinstance(strict, bool) else None,
        )
    _fail("response_format", "response_format.type must be 'text', 'json_object' or 'json_schema'.")


def _reasoning(body: dict[str, Any]) -> Reasoning | None:
    effort, param = body.get("reasoning_effort"), "reasoning_effort"
    reasoning = body.get("reasoning")
    if effort is None and isinstance(reasoning, dict):
        effort, param = reasoning.get("effort"), "reasoning.effort"
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in _EFFORTS:
        _fail(param, f"{param} must be one of: {', '.join(_EFFORTS)}; got {effort!r}.")
    return _EFFORTS[effort]


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


# -- writing a request for an OpenAI-compatible upstream ---------------------------------------


def endpoint_for(req: Request) -> Endpoint:
    """The upstream endpoint ``write`` targets: a completion goes to chat unless it is ``raw`` or
    has a ``suffix`` (fill-in-the-middle), which only the legacy completions endpoint takes."""
    if req.endpoint is Endpoint.COMPLETION and not (req.raw is True or req.suffix):
        return Endpoint.CHAT
    return Endpoint.EMBEDDING if req.endpoint is Endpoint.LEGACY_EMBEDDING else req.endpoint


def write(req: Request, model: str) -> tuple[Endpoint, dict[str, Any]]:
    """The endpoint and body an OpenAI-compatible upstream gets for ``req``, as ``model``."""
    endpoint = endpoint_for(req)
    if endpoint is Endpoint.EMBEDDING:
        out: dict[str, Any] = {"model": model, "input": req.input}
        if req.dimensions is not None:
            out["dimensions"] = req.dimensions
        return endpoint, out
    if endpoint is Endpoint.COMPLETION:
        if req.images:
            _fail(
                "images",
                "images cannot be sent with raw or suffix to a model on an OpenAI-compatible upstream, "
                "whose completions endpoint takes text only; drop raw/suffix or the images.",
            )
        out = {"model": model, "prompt": req.prompt or "", "stream": req.stream}
        if req.suffix:
            out["suffix"] = req.suffix
    elif req.endpoint is Endpoint.COMPLETION:  # a completion prompt, as a one-turn chat
        messages: list[dict[str, Any]] = []
        if req.system:
            messages.append({"role": "system", "content": req.system})
        user: list[Part] = [Text(req.prompt or ""), *req.images]
        messages.append({"role": "user", "content": _parts(user)})
        out = {"model": model, "messages": messages, "stream": req.stream}
    else:
        out = {"model": model, "messages": [_message(m) for m in req.messages], "stream": req.stream}
        if req.tools:
            out["tools"] = [t.definition for t in req.tools]
    if req.stream:  # without it OpenAI streams carry no token counts
        out["stream_options"] = {"include_usage": True}
    _write_sampling(out, req.sampling)
    _write_format(out, req.format)
    chat = endpoint is Endpoint.CHAT
    if chat and req.tools and req.tool_choice is not None:
        name = req.tool_choice.name
        out["tool_choice"] = {"type": "function", "function": {"name": name}} if name else "required"
    if chat and req.tools and req.parallel_tool_calls is False:
        out["parallel_tool_calls"] = False
    if chat and req.reasoning is not None and req.reasoning is not False:
        out["reasoning_effort"] = "medium" if req.reasoning is True else _TO_EFFORT[req.reasoning]
    if req.logprobs is True:
        if chat:
            out["logprobs"] = True
            if req.top_logprobs:
                out["top_logprobs"] = req.top_logprobs
        else:  # the legacy endpoint takes the number of alternatives instead of a flag
            out["logprobs"] = req.top_logprobs or 0
    return endpoint, out


def _write_sampling(out: dict[str, Any], s: Sampling) -> None:
    if s.max_tokens is not None and s.max_tokens > 0:  # Ollama's -1, -2 and 0 mean unlimited
        out["max_tokens"] = s.max_tokens
    for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "top_k", "min_p"):
        value = getattr(s, name)
        if value is not None:
            out[name] = value
    if s.repeat_penalty is not None:
        out["repetition_penalty"] = s.repeat_penalty
    if s.stop:
        out["stop"] = list(s.stop)


def _write_format(out: dict[str, Any], fmt: ResponseFormat | None) -> None:
    if fmt is None or fmt.kind == "text":
        return
    if fmt.kind == "json" or fmt.schema is None:
        out["response_format"] = {"type": "json_object"}
        return
    strict = False if fmt.strict is None else fmt.strict
    spec = {"name": fmt.name or "response", "schema": fmt.schema, "strict": strict}
    out["response_format"] = {"type": "json_schema", "json_schema": spec}


def _message(m: Message) -> dict[str, Any]:
    if m.role == "user":
        return {"role": "user", "content": _parts(m.content)}
    if m.role == "system":
        return {"role": "system", "content": m.text()}
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.text()}
    if not m.tool_calls:
        return {"role": "assistant", "content": m.text()}
    calls = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json()}}
        for c in m.tool_calls
    ]
    return {"role": "assistant", "content": m.text() or None, "tool_calls": calls}


def _parts(parts: list[Part]) -> str | list[dict[str, Any]]:
    """Text alone as a string; with images, a text part then each image as a data URL."""
    text = "\n".join(p.text for p in parts if isinstance(p, Text))
    if not any(isinstance(p, Image) for p in parts):
        return text
    out: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for image in parts:
        if isinstance(image, Image):
            out.append({"type": "image_url", "image_url": {"url": data_url(image)}})
    return out


def data_url(image: Image) -> str:
    """``image`` as a data: URL, its type sniffed from its first bytes when not given (a data:
    URL a client sent as an Ollama image is taken as given)."""
    data = image.data
    if data[:5].lower() == "data:":
        return data
    data = data.strip()
    if image.media_type:
        return f"data:{image.media_type};base64,{data}"
    head = data[:16]
    try:
        magic = binascii.a2b_base64(head + "=" * (-len(head) % 4))
    except binascii.Error:
        magic = b""
    return f"data:{_mime(magic)};base64,{data}"


def _mime(magic: bytes) -> str:
    if magic.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if magic.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if magic[:4] == b"RIFF" and magic[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"
