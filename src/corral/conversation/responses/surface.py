"""The ``/v1/responses`` surface: OpenAI Responses clients (Codex, the Agents SDK,
``client.responses``) over the model, stateless."""

from __future__ import annotations

from typing import Any

import orjson

from corral.conversation.answer import Answer, Embeddings
from corral.conversation.call import Call, Endpoint, Surface
from corral.conversation.request import Request
from corral.conversation.responses import answers, requests
from corral.conversation.responses.streams import ResponsesWriter
from corral.errors import InvalidRequest


class ResponsesSurface:
    surface = Surface.RESPONSES
    stream_type = "text/event-stream"

    def read(self, endpoint: Endpoint, body: dict[str, Any]) -> Request:
        return requests.read(endpoint, body)

    def answer(self, call: Call, answer: Answer, started_ns: int) -> bytes:
        return orjson.dumps(answers.write_response(answer, call.body, model=call.model))

    def embeddings(self, call: Call, emb: Embeddings, started_ns: int) -> bytes:
        raise InvalidRequest("The Responses API has no embeddings; use POST /v1/embeddings.")

    def stream(self, call: Call, started_ns: int) -> ResponsesWriter:
        return ResponsesWriter(body=call.body, model=call.model, response_id=answers.new_id("resp"))
