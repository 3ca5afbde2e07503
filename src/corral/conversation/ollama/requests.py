"""Ollama requests and the model: ``read`` a client's ``/api/chat``, ``/api/generate``,
``/api/embed`` or legacy ``/api/embeddings`` body into a ``Request``; ``write`` a ``Request`` as
the body an Ollama upstream takes.

``read`` checks the Ollama fields with an ``InvalidRequest`` naming the parameter (``options.``
for the nested ones) and makes the model complete where Ollama leaves things implicit: a tool
call without an id gets a stable one, and a tool result without ``tool_call_id`` answers the
first open call of its ``tool_name`` (latest turn first), else the first open call of the latest
turn. ``template`` and ``context`` have no place in the model and are dropped; so are runner
options for APIs that have none (they stay in ``options``, which only an Ollama upstream reads).

``write`` merges, lowest to highest: the provider's ``defaults.options``, ``defaults.num_ctx``,
the client's ``options``, then the model's sampling (OpenAI's ``max_tokens`` is ``num_predict``)
and ``num_ctx``; ``keep_alive`` falls back to the provider's. A ``think`` or ``format`` an
OpenAI client sent along as Ollama's own wins over the translated one.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
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
)

_ROLES: Final = ("system", "user", "assistant", "tool")
_LEVELS: Final = ("low", "medium", "high", "max")
# model sampling field -> Ollama option, for the options both have
_OPTIONS: Final = (
    *("seed", "top_k", "repeat_last_n", "temperature", "top_p", "frequency_penalty"),
    *("presence_penalty", "min_p", "typical_p", "repeat_penalty"),
)
_SAMPLED: Final = operator.attrgetter(*_OPTIONS)  # their values, in one call


@dataclass(frozen=True, slots=True)
class OllamaDefaults:
    """Per-provider settings from the config, applied under every request's own values."""

    keep_alive: str | int | None = None
    num_ctx: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


# -- reading a client's request ---------------------------------------------------------------


def read(endpoint: Endpoint, body: dict[str, Any]) -> Request:
    """The model of an Ollama client's request body (``endpoint`` says which API it came to)."""
    if endpoint is Endpoint.CHAT:
        req = Request(Endpoint.CHAT, stream=body.get("stream", True) is True)
        req.messages = _messages(body.get("messages"))
        tools = body.get("tools")
        if tools is not None:
            if not isinstance(tools, list):
                _fail("tools", "tools must be a list of tool definitions.")
            req.tools = [Tool(t) for t in tools]
        _sampling(req, body, chat=True)
        return req
    if endpoint is Endpoint.COMPLETION:
        return _read_generate(body)
    return _read_embed(endpoint, body)


def _read_generate(body: dict[str, Any]) -> Request:
    req = Request(Endpoint.COMPLETION, stream=body.get("stream", True) is True)
    prompt = body.get("prompt")
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        _fail("prompt", "prompt must be a string.")
    req.prompt = prompt
    suffix = body.get("suffix")
    raw_or_suffix = body.get("raw") is True or (isinstance(suffix, str) and bool(suffix))
    if body.get("raw") is True:
        req.raw = True
    if isinstance(suffix, str) and suffix:
        req.suffix = suffix
    images = body.get("images")
    if raw_or_suffix:  # the legacy completions endpoint: no system prompt, no thinking
        if images:
            req.images = [Image(str(i)) for i in images] if isinstance(images, list) else [Image(str(images))]
        _sampling(req, body, chat=False)
        return req
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        _fail("system", "system must be a string.")
    req.system = system or None
    req.images = _images(images, "images")
    _sampling(req, body, chat=True)
    return req


def _read_embed(endpoint: Endpoint, body: dict[str, Any]) -> Request:
    param = "input" if body.get("input") is not None else "prompt"
    value = body.get(param)
    if isinstance(value, str):
        text: str | list[str] = value
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        text = list(value)
    else:
        _fail(
            param,
            f"{param} must be a string or a non-empty list of strings (use input with /api/embed, "
            "prompt with the legacy /api/embeddings).",
        )
    req = Request(endpoint, input=text)
    dimensions = _num(body, "dimensions", integral=True)
    if dimensions is not None and dimensions < 1:
        _fail("dimensions", "dimensions must be a positive integer.")
    req.dimensions = dimensions
    req.truncate = body.get("truncate")
    req.keep_alive = body.get("keep_alive")
    return req


def _sampling(req: Request, body: dict[str, Any], *, chat: bool) -> None:
    """``options`` (into the model's sampling, and kept as given), ``format``, ``think``,
    ``logprobs`` and ``keep_alive``."""
    options = body.get("options")
    if options is not None:
        if not isinstance(options, dict):
            _fail("options", 'options must be an object of Ollama options, e.g. {"temperature": 0.7}.')
        req.options = options
        req.sampling = _options(options)
    fmt = body.get("format")
    if fmt == "json":
        req.format = ResponseFormat("json")
    elif isinstance(fmt, dict):
        req.format = ResponseFormat("json_schema", fmt)
    elif fmt not in (None, ""):
        _fail("format", 'format must be "json" or a JSON Schema object.')
    if chat:
        req.reasoning = _think(body.get("think"))
    if body.get("logprobs") is True:
        req.logprobs = True
        req.top_logprobs = _num(body, "top_logprobs", integral=True) or 0
    req.keep_alive = body.get("keep_alive")


def _options(options: dict[str, Any]) -> Sampling:
    where = "options."
    s = Sampling()
    limit = _num(options, "num_predict", integral=True, where=where)
    if limit is not None and limit > 0:  # -1 (no limit), -2 (fill the context) and 0 mean unlimited
        s.max_tokens = limit
    for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
        setattr(s, name, _num(options, name, integral=False, where=where))
    s.seed = _num(options, "seed", integral=True, where=where)
    s.top_k = _num(options, "top_k", integral=True, where=where)
    s.min_p = _num(options, "min_p", integral=False, where=where)
    s.repeat_penalty = _num(options, "repeat_penalty", integral=False, where=where)
    stop = options.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list) and all(isinstance(x, str) for x in stop):
        if stop:
            s.stop = list(stop)
    elif stop is not None:
        _fail("options.stop", "options.stop must be a list of strings.")
    return s


def _think(think: Any) -> Reasoning | None:
    if think is None:
        return None
    if isinstance(think, bool):
        return think
    if isinstance(think, str) and think in _LEVELS:
        return think  # type: ignore[return-value]
    _fail("think", f'think must be true, false, "low", "medium", "high" or "max"; got {think!r}.')


class _PendingCalls:
    """Tool calls of earlier assistant turns not yet answered by a tool message."""

    def __init__(self) -> None:
        self._turns: list[list[tuple[str, str]]] = []  # per assistant turn: (id, name)

    def add_turn(self, calls: list[tuple[str, str]]) -> None:
        self._turns.append(list(calls))

    def answer(self, call_id: str | None, name: str | None) -> str | None:
        """The id a tool message answers: its own ``call_id``, else the first unanswered call named
        ``name`` (latest turn first), else the first unanswered call of the latest turn with any."""
        for turn in reversed(self._turns):
            for k, (pending_id, pending_name) in enumerate(turn):
                if pending_id == call_id or (call_id is None and name and pending_name == name):
                    del turn[k]
                    return pending_id
        if call_id is not None:
            return call_id
        for turn in reversed(self._turns):
            if turn:
                return turn.pop(0)[0]
        return None


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        _fail(
            "messages",
            "messages must be a non-empty list of chat messages "
            "(a request without messages only loads a model on Ollama).",
        )
    pending = _PendingCalls()
    out: list[Message] = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            _fail(where, f"{where} must be an object with a role and content.")
        role = msg.get("role")
        if role not in _ROLES:
            _fail(
                f"{where}.role",
                f"{where}.role {role!r} is not supported; use system, user, assistant or tool.",
            )
        content = msg.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            _fail(f"{where}.content", f"{where}.content must be a string (Ollama messages carry plain text).")
        images = msg.get("images")
        if images and role != "user":
            _fail(
                f"{where}.images",
                f"{where}.images: OpenAI-compatible upstreams take images on user messages only; "
                "move the images to a user message.",
            )
        parts: list[Part] = [Text(content), *_images(images, f"{where}.images")]
        message = Message(role, parts)
        if role == "assistant":
            _tool_calls(message, msg, i, pending)
        elif role == "tool":
            call_id, name = msg.get("tool_call_id"), msg.get("tool_name")
            answered = pending.answer(
                call_id if isinstance(call_id, str) and call_id else None,
                name if isinstance(name, str) else None,
            )
            # No earlier call to answer: a stable made-up id; an OpenAI upstream rejects the orphan.
            message.tool_call_id = answered or f"call_{i}_unmatched"
            message.tool_name = name if isinstance(name, str) and name else None
        out.append(message)
    return out


def _tool_calls(message: Message, msg: dict[str, Any], i: int, pending: _PendingCalls) -> None:
    where = f"messages[{i}].tool_calls"
    raw_calls = msg.get("tool_calls")
    if not raw_calls:
        return
    if not isinstance(raw_calls, list):
        _fail(where, f"{where} must be a list of tool calls.")
    for j, call in enumerate(raw_calls):
        here = f"{where}[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            _fail(here, f'{here} must look like {{"function": {{"name": ..., "arguments": {{...}}}}}}.')
        args = fn.get("arguments")
        if args is None:
            args = {}
        elif not isinstance(args, dict | str):
            _fail(f"{here}.function.arguments", f"{here}.function.arguments must be an object.")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            text = args if isinstance(args, str) else orjson.dumps(args).decode()
            digest = hashlib.sha256(f"{i}:{j}:{fn['name']}:{text}".encode()).hexdigest()[:16]
            call_id = f"call_{j}_{digest}"
        message.tool_calls.append(ToolCall(fn["name"], args, call_id, j))
    pending.add_turn([(c.id or "", c.name) for c in message.tool_calls])


def _images(images: Any, where: str) -> list[Image]:
    if not images:
        return []
    if not isinstance(images, list) or not all(isinstance(image, str) and image for image in images):
        _fail(where, f"{where} must be a list of base64-encoded images.")
    return [Image(image) for image in images]


# -- writing a request for an Ollama upstream --------------------------------------------------


def write(
    req: Request,
    model: str,
    *,
    defaults: OllamaDefaults,
    num_ctx: int | None = None,
    stream: bool | None = None,
) -> dict[str, Any]:
    """The ``/api/chat``, ``/api/generate`` or ``/api/embed`` body for ``req``, as ``model``.
    ``num_ctx`` is a context length pinned for the model, over the client's; ``stream``, when
    given, is the upstream's stream flag whatever the client asked (corral always streams
    from Ollama)."""
    streaming = req.stream if stream is None else stream
    if req.endpoint is Endpoint.CHAT:
        out: dict[str, Any] = {"model": model, "messages": [_message(m) for m in req.messages]}
        out["stream"] = streaming
        if req.tools:
            out["tools"] = [t.definition for t in req.tools]
    elif req.endpoint is Endpoint.COMPLETION:
        out = {"model": model, "prompt": req.prompt or "", "stream": streaming}
        if req.suffix is not None:
            out["suffix"] = req.suffix
        if req.raw is not None:
            out["raw"] = req.raw
        if req.system is not None:
            out["system"] = req.system
        if req.images:
            out["images"] = [i.data for i in req.images]
    else:
        out = {"model": model, "input": req.input}
        if req.dimensions is not None:
            out["dimensions"] = req.dimensions
        if req.truncate is not None:
            out["truncate"] = req.truncate
    if req.endpoint is not Endpoint.EMBEDDING:
        fmt = _format(req.format)
        if fmt is not None:
            out["format"] = fmt
        if req.reasoning is not None:
            out["think"] = req.reasoning
        if req.logprobs is not None:
            out["logprobs"] = req.logprobs
        if req.top_logprobs is not None:
            out["top_logprobs"] = req.top_logprobs
    out.update(req.native)
    options = _write_options(req, defaults, num_ctx)
    if options:
        out["options"] = options
    keep_alive = req.keep_alive if req.keep_alive is not None else defaults.keep_alive
    if keep_alive is not None:
        out["keep_alive"] = keep_alive
    return out


def _write_options(req: Request, defaults: OllamaDefaults, num_ctx: int | None) -> dict[str, Any]:
    options: dict[str, Any] = dict(defaults.options)
    if defaults.num_ctx is not None:
        options["num_ctx"] = defaults.num_ctx
    options.update(req.options)
    s = req.sampling
    for name, value in zip(_OPTIONS, _SAMPLED(s), strict=True):
        if value is not None:
            options[name] = value
    if req.num_ctx is not None:
        options["num_ctx"] = req.num_ctx
    if num_ctx is not None:
        options["num_ctx"] = num_ctx
    if s.max_tokens is not None:
        options["num_predict"] = s.max_tokens
    if s.stop:
        options["stop"] = list(s.stop)
    return options


def _format(fmt: ResponseFormat | None) -> str | dict[str, Any] | None:
    if fmt is None or fmt.kind == "text":
        return None
    return fmt.schema if fmt.kind == "json_schema" and fmt.schema is not None else "json"


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.text()}
    images = m.images()
    if images:
        out["images"] = [i.data for i in images]
    if m.reasoning:
        out["thinking"] = m.reasoning
    if m.tool_calls:
        calls: list[dict[str, Any]] = []
        for c in m.tool_calls:
            call: dict[str, Any] = {
                "function": {"index": c.index, "name": c.name, "arguments": c.arguments_object()}
            }
            if c.id:
                call["id"] = c.id
            calls.append(call)
        out["tool_calls"] = calls
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    if m.tool_name is not None:
        out["tool_name"] = m.tool_name
    return out
