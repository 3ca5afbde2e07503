"""Cheap edits to a JSON request body that is otherwise forwarded as the client sent it."""

from __future__ import annotations

import re
from typing import Any

import orjson

# A top-level "model": "<string>" pair. Inside a JSON string a quote is always escaped, so this
# matches only real keys; when it matches more than once (a nested "model" key) we re-encode.
_MODEL_PAIR = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')


def with_model(raw: bytes, body: dict[str, Any], model: str) -> bytes:
    """``raw`` with its top-level model replaced, re-encoding only when a splice is unsafe."""
    if body.get("model") == model:
        return raw
    matches = list(_MODEL_PAIR.finditer(raw))
    if len(matches) == 1:
        start, end = matches[0].span()
        return b"".join((raw[:start], b'"model":', orjson.dumps(model), raw[end:]))
    return orjson.dumps({**body, "model": model})


def sse_error(message: str, *, code: str = "upstream_error", error_type: str = "upstream_error") -> bytes:
    """An in-band SSE error event, the form the OpenAI clients raise on."""
    event = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return b"data: " + orjson.dumps(event) + b"\n\n"
