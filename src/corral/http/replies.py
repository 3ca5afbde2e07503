"""Answers built by the data-plane handlers themselves (model lists, health, Ollama's fleet
views), and the headers every streamed answer carries."""

from __future__ import annotations

from typing import Any

import orjson

from corral.core.call import Reply
from corral.http.request_ids import id_headers

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def json_reply(data: Any, status: int = 200) -> Reply:
    return Reply(status=status, body=orjson.dumps(data))


def text_reply(text: bytes, status: int = 200) -> Reply:
    return Reply(status=status, body=text, content_type="text/plain; charset=utf-8")


def answer_headers(reply: Reply, request_id: str, client_request_id: str | None) -> dict[str, str]:
    """The headers of an answer to a client: the reply's own, the ids, and who served it
    (``x-corral-provider``, ``-model``, ``-attempts``, ``-fallback``)."""
    headers = reply.headers
    headers.update(id_headers(request_id, client_request_id))
    served = reply.served
    if served is not None:
        headers["x-corral-provider"] = served.provider
        headers["x-corral-model"] = served.model
        headers["x-corral-attempts"] = str(served.attempts)
        if served.fallback is not None:
            headers["x-corral-fallback"] = served.fallback
    return headers
