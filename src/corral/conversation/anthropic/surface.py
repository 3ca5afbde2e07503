"""The ``/v1/messages`` surface: Anthropic Messages clients (Claude Code, the ``anthropic`` SDK)
over the model."""

from __future__ import annotations

from typing import Any

import orjson

from corral.conversation.answer import Answer, Embeddings
from corral.conversation.anthropic import answers, requests
from corral.conversation.anthropic.streams import MessagesWriter
from corral.conversation.call import Call, Endpoint, Surface
from corral.conversation.request import Request
from corral.errors import InvalidRequest


class MessagesSurface:
    surface = Surface.MESSAGES
    stream_type = "text/event-stream"

    def read(self, endpoint: Endpoint, body: dict[str, Any]) -> Request:
        return requests.read(endpoint, body)

    def answer(self, call: Call, answer: Answer, started_ns: int) -> bytes:
        omit = requests.thinking_omitted(call.body)
        return orjson.dumps(answers.write_message(answer, model=call.model, omit_thinking=omit))

    def embeddings(self, call: Call, emb: Embeddings, started_ns: int) -> bytes:
        raise InvalidRequest("The Messages API has no embeddings; use POST /v1/embeddings.")

    def stream(self, call: Call, started_ns: int) -> MessagesWriter:
        omit = requests.thinking_omitted(call.body)
        return MessagesWriter(model=call.model, message_id=answers.message_id(), omit_thinking=omit)
