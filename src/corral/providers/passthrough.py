"""What corral still does to an answer it passes through to a client of the upstream's own API:
the bytes stay the upstream's, except that the client sees the model name it asked for, and
corral learns the usage and how much text went by without parsing every chunk.

``Renamer`` rewrites the upstream's ``"model": "<its name>"`` to the requested name, once it has
seen how the upstream spells the field (its first chunk), with one C-level replace per chunk.
``usage_of`` reads the counts of a whole answer. Counting pieces of text for an estimate (when the
upstream reports no usage, or an interrupted stream ends before it would) is one ``count`` per
chunk in the relays: upstreams stream a token per event.
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.conversation.answer import Usage
from corral.conversation.call import Outcome
from corral.conversation.ollama import answers as ollama_answers
from corral.conversation.openai import answers as openai_answers

_MODEL_KEYS = (b'"model":"', b'"model": "')


def model_field(data: bytes) -> bytes | None:
    """The first ``"model": "..."`` field of ``data`` as sent (key, separator, quoted value)."""
    for key in _MODEL_KEYS:
        start = data.find(key)
        if start < 0:
            continue
        end = start + len(key)
        while True:
            quote = data.find(b'"', end)
            if quote < 0:
                return None
            escapes = 0
            while data[quote - 1 - escapes] == 0x5C:  # backslashes before the quote
                escapes += 1
            if escapes % 2 == 0:
                return data[start : quote + 1]
            end = quote + 1
    return None


class Renamer:
    """The requested model name in place of the upstream's, in every chunk after the first
    that names it."""

    __slots__ = ("_new", "_old", "_with")

    def __init__(self, requested: str, served: str | None = None) -> None:
        # asked for by the upstream's own name (``served``): the answer already says it, no work
        same = requested == served
        self._new = b"" if same else orjson.dumps(requested)
        self._old: bytes | None = b"" if same else None  # the upstream's spelling; b"": nothing to do
        self._with = b""

    def __call__(self, data: bytes) -> bytes:
        old = self._old
        if old is None:
            found = model_field(data)
            if found is None:
                return data
            value = found.index(b'"', 7)  # the value's opening quote, after '"model"' and ':'
            self._with = found[:value] + self._new
            old = self._old = b"" if found == self._with else found
        return data.replace(old, self._with) if old else data  # the same bytes when it is not there


def usage_of(body: bytes, *, ollama: bool) -> Usage | None:
    """The token counts of a whole answer (an OpenAI ``usage`` object, or Ollama's counts)."""
    data = _object(body)
    if data is None:
        return None
    if ollama:
        if "prompt_eval_count" not in data and "eval_count" not in data:
            return None
        return ollama_answers.read_usage(data)
    return openai_answers.read_usage(data.get("usage"))


def note_whole(body: bytes, outcome: Outcome) -> None:
    """What a whole OpenAI answer says of its tokens: the upstream's counts, else (for an
    estimate) how much text it has."""
    data = _object(body)
    if data is None:
        return
    outcome.usage = openai_answers.read_usage(data.get("usage"))
    if outcome.usage is None and data.get("choices"):
        answer = openai_answers.read(data)
        outcome.chars = len(answer.text) + len(answer.reasoning)


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None
