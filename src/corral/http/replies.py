"""Answers built by the data-plane handlers themselves (model lists, health, Ollama's fleet
views), and the headers every streamed answer carries."""

from __future__ import annotations

from typing import Any

import orjson

from corral.core.call import Reply

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def json_reply(data: Any, status: int = 200) -> Reply:
    return Reply(status=status, body=orjson.dumps(data))


def text_reply(text: bytes, status: int = 200) -> Reply:
    return Reply(status=status, body=text, content_type="text/plain; charset=utf-8")
