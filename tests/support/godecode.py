"""Read a JSON body the way a Go server (Ollama) reads it: ``encoding/json`` into a struct.

Go's rules, which orjson (and Python's json) do not share:

- an object key reaches a struct field by the field's json tag: an exact match first, else a
  case-insensitive one under Unicode simple folding, so ``"MODEL"``, ``"Model"``, ``"stream"``
  spelled with a long s (U+017F) and ``"keep_alive"`` with a Kelvin sign (U+212A) all reach
  their fields;
- when a key (or two spellings of one field) occurs twice, the last one wins;
- an object decoded into a map field that already holds a map adds to it (Go reuses the map), so
  two ``options`` objects merge;
- keys inside a map (Ollama's ``options`` is ``map[string]any``) match exactly.

``go_decode(raw, CHAT_REQUEST)`` is what Ollama's ``/api/chat`` handler sees in ``raw``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAP = "map"  # a map[string]any field: a second object merges into the first
VALUE = "value"  # any other field: a second occurrence replaces the first

CHAT_REQUEST: Mapping[str, str] = {
    **dict.fromkeys(("model", "messages", "stream", "format", "keep_alive", "tools", "think"), VALUE),
    **dict.fromkeys(("truncate", "shift", "logprobs", "top_logprobs"), VALUE),
    "options": MAP,
}
GENERATE_REQUEST: Mapping[str, str] = {
    **dict.fromkeys(("model", "prompt", "suffix", "system", "template", "context", "stream"), VALUE),
    **dict.fromkeys(("raw", "format", "keep_alive", "images", "think", "truncate", "shift"), VALUE),
    "options": MAP,
}


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, in order, duplicates kept."""


def fold(name: str) -> str:
    """Go's folded form of a field name: each character replaced by the smallest one of its
    simple case-folding orbit (ASCII letters by their upper case)."""
    out = []
    for char in name:
        orbit = {char, char.lower(), char.upper(), char.casefold()}
        orbit |= {c.lower() for c in orbit} | {c.upper() for c in orbit}
        out.append(min(c for c in orbit if len(c) == 1))
    return "".join(out)


def _plain(value: Any) -> Any:
    """A value decoded into ``any``: objects become maps (the last duplicate key wins)."""
    if isinstance(value, _Pairs):
        return {key: _plain(item) for key, item in value}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def go_decode(raw: bytes, fields: Mapping[str, str]) -> dict[str, Any]:
    """The struct Go decodes ``raw`` into, as a dict of the fields that were set."""
    top = json.loads(raw, object_pairs_hook=_Pairs)
    if not isinstance(top, _Pairs):
        raise ValueError("not a JSON object")
    by_fold = {fold(name): name for name in fields}
    out: dict[str, Any] = {}
    for key, value in top:
        field = key if key in fields else by_fold.get(fold(key))
        if field is None:
            continue  # an unknown key: Go ignores it
        current = out.get(field)
        if fields[field] == MAP and isinstance(value, _Pairs) and isinstance(current, dict):
            current.update(_plain(value))
        else:
            out[field] = _plain(value)
    return out


def top_level_keys(raw: bytes) -> list[str]:
    """Every top-level key of ``raw`` in order, duplicates kept (escapes decoded)."""
    top = json.loads(raw, object_pairs_hook=_Pairs)
    if not isinstance(top, _Pairs):
        raise ValueError("not a JSON object")
    return [key for key, _ in top]


def first_wins(raw: bytes) -> dict[str, Any]:
    """``raw`` read by a parser that keeps the first of duplicate keys (some do)."""
    out: dict[str, Any] = {}
    for key, value in json.loads(raw, object_pairs_hook=_Pairs):
        out.setdefault(key, _plain(value))
    return out
