"""The simulated upstreams of the conformance suite: what a model does (``Behaviour``, in the
conversation model's terms) written out in each upstream type's own API, as a server of that
API writes it (the same writers corral answers its clients with), with a fault where asked.

The upstream echoes its own name for the model, as real servers do; corral must show the client
the name the client asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from corral.conversation.answer import Answer, Delta, Embeddings, Event, Finish, ToolCallDelta, Usage
from corral.conversation.ollama import answers as ollama_answers
from corral.conversation.ollama.streams import NDJSONWriter
from corral.conversation.openai import answers as openai_answers
from corral.conversation.openai.streams import DONE, SSEWriter, sse
from corral.conversation.request import ToolCall
from tests.providers.conformance.transport import Script, Seen

Fault = Literal[
    "hang_before", "drop_before", "stall", "drop", "done_no_finish_drop", "done_no_finish", "done_then_drop"
]
NDJSON = {"content-type": "application/x-ndjson"}
SSE = {"content-type": "text/event-stream"}


@dataclass
class Behaviour:
    text: str = "Hello from the model"
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish: Literal["stop", "length", "tool_calls"] = "stop"
    usage: Usage | None = field(default_factory=lambda: Usage(12, 4))
    vectors: list[list[float]] = field(default_factory=lambda: [[0.25, -0.5, 1.0]])
    status: int = 200  # non-2xx: an error answer
    error: str = "something went wrong"
    fault: Fault | None = None
    after: int = 2  # stream pieces sent before a mid-stream fault
    # how an OpenAI-type upstream treats stream_options.include_usage: as asked, not at all, or
    # with zeros (llama-cpp-python's server)
    stream_usage: Literal["asked", "never", "zeros"] = "asked"


def events(b: Behaviour) -> list[Event]:
    out: list[Event] = [Delta(reasoning=piece) for piece in _words(b.reasoning)]
    out += [Delta(piece) for piece in _words(b.text)]
    if b.tool_calls:
        out.append(
            Delta(tool_calls=[ToolCallDelta(c.index, c.id, c.name, c.arguments_json()) for c in b.tool_calls])
        )
    out.append(Finish(b.finish, b.usage))
    return out


def _words(text: str) -> list[str]:
    words = text.split(" ") if text else []
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def answer(b: Behaviour) -> Answer:
    return Answer(b.text, b.reasoning, list(b.tool_calls), b.finish, b.usage)


def _faulted(pieces: list[bytes], headers: dict[str, str], b: Behaviour) -> Script:
    if b.fault == "stall":
        return Script(200, headers, pieces[: b.after], end="hang")
    if b.fault == "drop":
        return Script(200, headers, pieces[: b.after], end="drop")
    return Script(200, headers, pieces)


def ollama(b: Behaviour) -> Any:
    """An Ollama server: /api/chat, /api/generate, /api/embed, and the listings."""

    def handle(seen: Seen) -> Script:
        if seen.path == "/api/tags":
            return Script(pieces=[orjson.dumps({"models": [{"name": "m:latest", "model": "m:latest"}]})])
        if seen.path in ("/api/version", "/api/ps"):
            return Script(pieces=[b'{"version": "0.12.0", "models": []}'])
        if b.fault == "hang_before":
            return Script(hang_before=True)
        if b.fault == "drop_before":
            return Script(drop_before=True)
        if b.status >= 300:
            return Script(b.status, pieces=[orjson.dumps({"error": b.error})])
        body = seen.body or {}
        model = body.get("model", "?")
        if seen.path in ("/api/embed", "/api/embeddings"):
            emb = ollama_answers.write_embed(
                Embeddings(b.vectors, 3), model=model, legacy=seen.path == "/api/embeddings"
            )
            return Script(pieces=[orjson.dumps(emb)])
        chat = seen.path == "/api/chat"
        if body.get("stream", True) is False:
            write = ollama_answers.write_chat if chat else ollama_answers.write_generate
            return Script(pieces=[orjson.dumps(write(answer(b), model=model, started_ns=0))])
        writer = NDJSONWriter(chat=chat, model=model, started_ns=0)
        pieces = [p for p in (writer.write(e) for e in events(b)) if p]
        return _faulted(pieces, NDJSON, b)

    return handle


def openai(b: Behaviour) -> Any:
    """An OpenAI-compatible server: /chat/completions, /completions, /embeddings, /models."""

    def handle(seen: Seen) -> Script:
        if seen.path.endswith("/models"):
            return Script(pieces=[b'{"object": "list", "data": [{"id": "m", "object": "model"}]}'])
        if b.fault == "hang_before":
            return Script(hang_before=True)
        if b.fault == "drop_before":
            return Script(drop_before=True)
        if b.status >= 300:
            error = {
                "error": {"message": b.error, "type": "invalid_request_error", "param": None, "code": None}
            }
            return Script(b.status, pieces=[orjson.dumps(error)])
        body = seen.body or {}
        model = body.get("model", "?")
        if seen.path.endswith("/embeddings"):
            emb = openai_answers.write_embeddings(Embeddings(b.vectors, 3), model=model, encoding_format=None)
            return Script(pieces=[orjson.dumps(emb)])
        chat = seen.path.endswith("/chat/completions")
        if body.get("stream") is not True:
            write = openai_answers.write_chat if chat else openai_answers.write_completion
            whole = orjson.dumps(write(answer(b), request_id="up-1", model=model, created=1))
            half = len(whole) // 2
            return _faulted(
                [whole[:half], whole[half:]], {"content-type": "application/json"}, replace(b, after=1)
            )
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        include_usage = include_usage and b.stream_usage != "never"
        told = replace(b, usage=Usage(0, 0)) if b.stream_usage == "zeros" else b
        if b.fault in ("done_no_finish", "done_no_finish_drop", "done_then_drop"):
            return _done_faults(told, model, include_usage)
        writer = SSEWriter(chat=chat, request_id="up-1", model=model, created=1, include_usage=include_usage)
        pieces = [p for p in (writer.write(e) for e in events(told)) if p]
        return _faulted(pieces, SSE, told)

    return handle


def _done_faults(b: Behaviour, model: str, include_usage: bool) -> Script:
    """llama-cpp-python interrupting a generation: the role chunk, then [DONE], then (``_drop``)
    it drops the connection without ending the body; or (``done_then_drop``) a whole answer whose
    connection breaks after its [DONE]."""
    role = {"id": "up-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    first = sse(
        {
            **role,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    )
    if b.fault == "done_then_drop":
        writer = SSEWriter(chat=True, request_id="up-1", model=model, created=1, include_usage=include_usage)
        pieces = [p for p in (writer.write(e) for e in events(b)) if p]
        return Script(200, SSE, pieces, end="drop")
    return Script(200, SSE, [first, DONE], end="drop" if b.fault == "done_no_finish_drop" else "clean")
