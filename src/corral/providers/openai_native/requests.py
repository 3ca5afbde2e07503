"""Request translation, Ollama native API -> OpenAI API.

Owns the pure mapping of ``/api/chat``, ``/api/generate``, ``/api/embed`` and the legacy
``/api/embeddings`` bodies onto OpenAI ``/chat/completions``, ``/completions`` and ``/embeddings``
bodies. Bad client input raises ``InvalidRequest`` naming the parameter and the fix.

Decisions:

* ``/api/generate`` goes to ``/chat/completions`` (``generate_endpoint`` says which): Ollama
  applies the model's chat template to a generate prompt, which only the upstream's chat endpoint
  reproduces, and OpenAI itself serves its chat models on no other endpoint. ``system`` becomes a
  system message, ``images`` image parts. Only ``raw: true`` (no template wanted) and a ``suffix``
  (fill-in-the-middle) go to the legacy ``/completions`` endpoint, where ``system`` and ``think``
  have no place and are dropped. ``template`` and ``context`` are dropped everywhere. An empty
  prompt (Ollama's "just load the model") is sent as an empty user message.
* ``thinking`` on input assistant messages is dropped: OpenAI has no input field for it.
* ``top_k``, ``min_p`` and ``repeat_penalty`` (sent as vLLM's ``repetition_penalty``) are
  top-level extras OpenAI itself rejects, so they are sent only when the client set them.
  Runner options (``num_ctx``, ``num_gpu``, ``num_thread``...), other sampling options OpenAI
  servers lack (``typical_p``, ``mirostat``...), ``keep_alive`` and ``truncate`` are dropped.
* ``think: false`` sends nothing (the upstream's default); ``true`` is ``reasoning_effort: medium``
  and Ollama's ``max`` level is ``high``, the highest level every reasoning server accepts.
"""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import orjson

from corral.core.call import Endpoint
from corral.providers.fields import fail as _fail
from corral.providers.fields import number as _num

# Ollama option -> OpenAI field. The first row is OpenAI's own; the second vLLM's extras.
_SAME_NAME: Final = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
_EXTRAS: Final[Mapping[str, str]] = MappingProxyType(
    {"top_k": "top_k", "min_p": "min_p", "repeat_penalty": "repetition_penalty"}
)
_THINK_TO_EFFORT: Final[Mapping[str, str]] = MappingProxyType(
    {"low": "low", "medium": "medium", "high": "high", "max": "high"}
)
_ROLES: Final = ("system", "user", "assistant", "tool")


def chat_to_openai(body: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    """Translate an Ollama ``/api/chat`` body into an OpenAI ``/chat/completions`` body."""
    out: dict[str, Any] = {"model": model, "messages": _messages(body.get("messages")), "stream": stream}
    _stream_options(out, stream)
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            _fail("tools", "tools must be a list of tool definitions.")
        if tools:
            out["tools"] = tools
    _sampling(out, body, chat=True)
    return out


def generate_endpoint(body: dict[str, Any]) -> Endpoint:
    """Which OpenAI endpoint ``generate_to_openai`` targets for this ``/api/generate`` body:
    ``Endpoint.COMPLETION`` for ``raw: true`` or a non-empty ``suffix``, else ``Endpoint.CHAT``."""
    suffix = body.get("suffix")
    if body.get("raw") is True or (isinstance(suffix, str) and suffix):
        return Endpoint.COMPLETION
    return Endpoint.CHAT


def generate_to_openai(body: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    """Translate an Ollama ``/api/generate`` body into the body for ``generate_endpoint(body)``:
    a one-turn ``/chat/completions`` request, or a ``/completions`` one for raw and suffix prompts."""
    prompt = body.get("prompt")
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        _fail("prompt", "prompt must be a string.")
    images = body.get("images")
    if generate_endpoint(body) is Endpoint.COMPLETION:
        if images:
            _fail(
                "images",
                "images cannot be sent with raw or suffix to a model on an OpenAI-compatible upstream, "
                "whose completions endpoint takes text only; drop raw/suffix or the images.",
            )
        out: dict[str, Any] = {"model": model, "prompt": prompt, "stream": stream}
        suffix = body.get("suffix")
        if isinstance(suffix, str) and suffix:
            out["suffix"] = suffix
        _stream_options(out, stream)
        _sampling(out, body, chat=False)
        return out
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        _fail("system", "system must be a string.")
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": _content(prompt, images, "images")})
    out = {"model": model, "messages": messages, "stream": stream}
    _stream_options(out, stream)
    _sampling(out, body, chat=True)
    return out


def embed_to_openai(body: dict[str, Any], model: str) -> dict[str, Any]:
    """Translate an ``/api/embed`` body (``input``) or a legacy ``/api/embeddings`` body
    (``prompt``) into an OpenAI ``/embeddings`` body."""
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
    out: dict[str, Any] = {"model": model, "input": text}
    dimensions = _num(body, "dimensions", integral=True)
    if dimensions is not None:
        if dimensions < 1:
            _fail("dimensions", "dimensions must be a positive integer.")
        out["dimensions"] = dimensions
    return out


# -- shared pieces ----------------------------------------------------------------------------


def _stream_options(out: dict[str, Any], stream: bool) -> None:
    if stream:  # without it OpenAI streams carry no token counts
        out["stream_options"] = {"include_usage": True}


def _sampling(out: dict[str, Any], body: dict[str, Any], *, chat: bool) -> None:
    """Add ``options``, ``format``, ``think`` and ``logprobs`` as OpenAI fields."""
    _options(out, body.get("options"))
    fmt = body.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        schema = {"name": "response", "schema": fmt, "strict": False}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt not in (None, ""):
        _fail("format", 'format must be "json" or a JSON Schema object.')
    if chat:
        effort = _effort(body.get("think"))
        if effort is not None:
            out["reasoning_effort"] = effort
    if body.get("logprobs") is True:
        top = _num(body, "top_logprobs", integral=True) or 0
        if chat:
            out["logprobs"] = True
            if top:
                out["top_logprobs"] = top
        else:  # the legacy endpoint takes the number of alternatives instead of a flag
            out["logprobs"] = top


def _options(out: dict[str, Any], options: Any) -> None:
    if options is None:
        return
    if not isinstance(options, dict):
        _fail("options", 'options must be an object of Ollama options, e.g. {"temperature": 0.7}.')
    where = "options."
    limit = _num(options, "num_predict", integral=True, where=where)
    if limit is not None and limit > 0:  # -1 (no limit), -2 (fill the context) and 0 mean unlimited
        out["max_tokens"] = limit
    for name in _SAME_NAME:
        value = _num(options, name, integral=False, where=where)
        if value is not None:
            out[name] = value
    seed = _num(options, "seed", integral=True, where=where)
    if seed is not None:
        out["seed"] = seed
    for name, target in _EXTRAS.items():
        value = _num(options, name, integral=name == "top_k", where=where)
        if value is not None:
            out[target] = value
    stop = options.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if stop:
            out["stop"] = list(stop)
    elif stop is not None:
        _fail("options.stop", "options.stop must be a list of strings.")


def _effort(think: Any) -> str | None:
    if think is None or think is False:
        return None
    if think is True:
        return "medium"
    if isinstance(think, str) and think in _THINK_TO_EFFORT:
        return _THINK_TO_EFFORT[think]
    _fail("think", f'think must be true, false, "low", "medium", "high" or "max"; got {think!r}.')


# -- messages ---------------------------------------------------------------------------------


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


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        _fail(
            "messages",
            "messages must be a non-empty list of chat messages "
            "(a request without messages only loads a model on Ollama).",
        )
    pending = _PendingCalls()
    out: list[dict[str, Any]] = []
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
        if role == "assistant":
            out.append(_assistant(msg, content, i, pending))
        elif role == "tool":
            out.append(_tool(msg, content, i, pending))
        elif role == "user":
            out.append({"role": "user", "content": _content(content, images, f"{where}.images")})
        else:
            out.append({"role": "system", "content": content})
    return out


def _assistant(msg: dict[str, Any], content: str, i: int, pending: _PendingCalls) -> dict[str, Any]:
    where = f"messages[{i}].tool_calls"
    raw_calls = msg.get("tool_calls")
    if not raw_calls:
        return {"role": "assistant", "content": content}
    if not isinstance(raw_calls, list):
        _fail(where, f"{where} must be a list of tool calls.")
    calls: list[dict[str, Any]] = []
    for j, call in enumerate(raw_calls):
        here = f"{where}[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            _fail(here, f'{here} must look like {{"function": {{"name": ..., "arguments": {{...}}}}}}.')
        args = fn.get("arguments")
        if args is None:
            args = "{}"
        elif isinstance(args, dict):
            args = orjson.dumps(args).decode()
        elif not isinstance(args, str):
            _fail(f"{here}.function.arguments", f"{here}.function.arguments must be an object.")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            digest = hashlib.sha256(f"{i}:{j}:{fn['name']}:{args}".encode()).hexdigest()[:16]
            call_id = f"call_{j}_{digest}"
        calls.append({"id": call_id, "type": "function", "function": {"name": fn["name"], "arguments": args}})
    pending.add_turn([(c["id"], c["function"]["name"]) for c in calls])
    return {"role": "assistant", "content": content or None, "tool_calls": calls}


def _tool(msg: dict[str, Any], content: str, i: int, pending: _PendingCalls) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    name = msg.get("tool_name")
    answered = pending.answer(
        call_id if isinstance(call_id, str) and call_id else None, name if isinstance(name, str) else None
    )
    # No earlier call to answer: a stable made-up id; OpenAI itself will reject the orphan.
    return {"role": "tool", "tool_call_id": answered or f"call_{i}_unmatched", "content": content}


def _content(text: str, images: Any, where: str) -> str | list[dict[str, Any]]:
    if not images:
        return text
    if not isinstance(images, list) or not all(isinstance(image, str) and image for image in images):
        _fail(where, f"{where} must be a list of base64-encoded images.")
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for image in images:
        parts.append({"type": "image_url", "image_url": {"url": _data_url(image)}})
    return parts


def _data_url(image: str) -> str:
    if image[:5].lower() == "data:":  # already a data URL: taken as given
        return image
    image = image.strip()
    head = image[:16]
    try:
        magic = binascii.a2b_base64(head + "=" * (-len(head) % 4))
    except binascii.Error:
        magic = b""
    return f"data:{_mime(magic)};base64,{image}"


def _mime(magic: bytes) -> str:
    if magic.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if magic.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if magic[:4] == b"RIFF" and magic[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"
