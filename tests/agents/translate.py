"""The goldens' cases run through corral's adapters (``test_translation_goldens.Translator``).

Requests: the surface's reader into the model, the upstream's writer out (for Ollama the
provider's own ``model_path.ollama_body``, so its refusals are checked too; Messages to a
Messages upstream is the pass-through the ``anthropic`` type does). Answers: the upstream's
reader, the surface's writer. Streams: the upstream's stream reader fed the case's chunks (an
end of body after them, or a broken connection for ``"<connection closed>"``), the surface's
stream writer, its output parsed back into events.
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.conversation.answer import Answer, Event, Failure
from corral.conversation.anthropic import answers as messages_answers
from corral.conversation.anthropic import requests as messages_requests
from corral.conversation.anthropic.streams import MessagesReader, MessagesWriter
from corral.conversation.call import Endpoint
from corral.conversation.ollama import answers as ollama_answers
from corral.conversation.ollama.requests import OllamaDefaults
from corral.conversation.ollama.streams import NDJSONReader
from corral.conversation.openai import answers as openai_answers
from corral.conversation.openai import requests as openai_requests
from corral.conversation.openai.streams import SSEReader, SSEWriter
from corral.conversation.request import Request
from corral.conversation.responses import answers as responses_answers
from corral.conversation.responses import requests as responses_requests
from corral.conversation.responses.streams import ResponsesWriter
from corral.providers.model_path import ollama_body

CUT = "<connection closed>"


def _read(surface: str, body: dict[str, Any]) -> Request:
    if surface == "anthropic_messages":
        req = messages_requests.read(Endpoint.CHAT, body)
    elif surface == "openai_responses":
        req = responses_requests.read(Endpoint.CHAT, body)
    else:
        req = openai_requests.read(Endpoint.CHAT, body)
    req.stream = body.get("stream") is True
    return req


class Adapters:
    def request(self, case: dict[str, Any]) -> dict[str, Any]:
        body, model, upstream = case["input"], case["model"], case["upstream"]
        if case["surface"] == "anthropic_messages" and upstream == "anthropic":
            return dict(body, model=model)  # the pass-through: only the model changes
        req = _read(case["surface"], body)
        if upstream == "ollama":
            out = ollama_body(req, model, defaults=OllamaDefaults(), num_ctx=None)
            out["stream"] = req.stream  # the provider streams every call; the golden shows the client's
            return out
        if upstream == "openai":
            return openai_requests.write(req, model)[1]
        return messages_requests.write(req, model)

    def answer(self, case: dict[str, Any]) -> dict[str, Any]:
        data, upstream = case["upstream_answer"], case["upstream"]
        answer: Answer
        if upstream == "ollama":
            answer = ollama_answers.read(data)
        elif upstream == "openai":
            answer = openai_answers.read(data)
        else:
            answer = messages_answers.read(data)
        return self._write(case, answer)

    def _write(self, case: dict[str, Any], answer: Answer) -> dict[str, Any]:
        request = case["request"]
        model = request["model"]
        if case["surface"] == "anthropic_messages":
            omit = messages_requests.thinking_omitted(request)
            return messages_answers.write_message(answer, model=model, omit_thinking=omit)
        if case["surface"] == "openai_responses":
            return responses_answers.write_response(answer, request, model=model)
        return openai_answers.write_chat(answer, request_id="chatcmpl-golden", model=model, created=0)

    def stream(self, case: dict[str, Any]) -> list[Any]:
        events = self._events(case)
        request = case["request"]
        model = request["model"]
        writer: MessagesWriter | ResponsesWriter | SSEWriter
        if case["surface"] == "anthropic_messages":
            omit = messages_requests.thinking_omitted(request)
            writer = MessagesWriter(model=model, message_id="msg_golden", omit_thinking=omit)
        elif case["surface"] == "openai_responses":
            writer = ResponsesWriter(body=request, model=model, response_id="resp_golden")
        else:
            options = request.get("stream_options") or {}
            writer = SSEWriter(
                chat=True,
                request_id="chatcmpl-golden",
                model=model,
                created=0,
                include_usage=options.get("include_usage") is True,
            )
        out = b"".join(writer.write(e) for e in events)
        return _parse(case["surface"], out)

    def _events(self, case: dict[str, Any]) -> list[Event]:
        chunks, upstream = case["upstream_stream"], case["upstream"]
        reader: NDJSONReader | SSEReader | MessagesReader
        if upstream == "ollama":
            reader = NDJSONReader(chat=True)
        elif upstream == "openai":
            reader = SSEReader()
        else:
            reader = MessagesReader()
        events: list[Event] = []
        for chunk in chunks:
            if chunk == CUT:
                if not reader.done:
                    events.append(
                        Failure(
                            "Upstream's stream broke off; the connection closed.",
                            "upstream_stream_interrupted",
                        )
                    )
                return events
            if upstream == "ollama":
                events += reader.feed(orjson.dumps(chunk))
            elif upstream == "openai":
                events += reader.feed(
                    b"data: " + (b"[DONE]" if chunk == "[DONE]" else orjson.dumps(chunk)) + b"\n\n"
                )
            else:
                name, data = chunk
                events += reader.feed(f"event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n")
        return events + reader.end()


def _parse(surface: str, out: bytes) -> list[Any]:
    events: list[Any] = []
    for block in out.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        if data is None or data == "[DONE]":
            continue
        parsed = orjson.loads(data)
        events.append((name, parsed) if surface == "anthropic_messages" else parsed)
    return events
