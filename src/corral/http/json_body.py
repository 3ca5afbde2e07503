"""Reading a request body safely: one JSON object, parsed at a bounded cost, and the
client-chosen names in it checked before they travel on (into routes, caches, headers, logs).

Parsing JSON costs memory in proportion to the number of values, not to the bytes: orjson
holds about 100 bytes for each ``{}`` (3 bytes of body) and each short string, so 32 MiB of
``{},{},…`` would take about 1 GB. Bodies over ``SCAN_FROM`` are measured before they are
parsed (``parse_cost``: byte counts at C speed, nothing decoded) and refused with a 413 when
parsing them would take more than ``PARSE_FACTOR`` times their size. Ordinary bodies (text,
tool schemas, token arrays, images) cost 2 to 11 times their size; smaller bodies are parsed
unmeasured, since no body under ``SCAN_FROM`` can cost more than about 40 MiB.

The request checks of both surfaces call ``check_name`` (a model name is at most ``MAX_NAME``
printable characters) and ``refuse_shadowing`` (no key that an upstream reading keys
case-insensitively would take for a field, ``MODEL`` for ``model``).
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.conversation.body import shadowing_path
from corral.core.catalog import MAX_NAME
from corral.errors import BodyTooLarge, InvalidRequest

SCAN_FROM = 1024 * 1024  # bodies at most this large are parsed without measuring them first
PARSE_FACTOR = 16  # bytes of parse memory allowed per byte of body
MIB = 1024 * 1024

# Bytes of parse memory per value, measured (CPython 3.11, orjson 3) and rounded up: a value
# behind a separator (its orjson node, its list slot, a float or int object) 56, and on top a
# container (an empty dict or list) 80 or a string 48; the text itself, copied twice (orjson's
# buffer, then str objects): twice the body. A body of floats or 8-character strings comes to
# about 15 times its size; of empty objects, 30; of 1-character strings, 23.
_CONTAINER, _STRING, _SEPARATOR, _BASE = 80, 48, 56, 2
_SHAPE = bytes(b for b in range(256) if b not in b'"{[,:')  # deleted: all but these
_STRUCTURE = (b"{", b"[", b",", b":")
_FEW_QUOTES = 4096  # below this many quote bytes, strings are found one by one


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object. 400 for anything else; 413 when it would cost too much to parse."""
    if len(raw) > SCAN_FROM:
        cost = parse_cost(raw)
        if cost > PARSE_FACTOR * len(raw):
            raise _too_costly(len(raw), cost)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON ({exc}).", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def parse_cost(raw: bytes) -> int:
    """About how many bytes parsing ``raw`` takes at most, from counts of its structural bytes.

    First counted over the whole body, strings' contents included (one pass, at C speed); only
    when that is over the limit, counted again outside the strings, so that text made of commas
    and brackets (CSV, JSON carried in a string) is not taken for structure.
    """
    shape = raw.translate(None, _SHAPE)
    counts = _counts(shape)
    quotes = shape.count(b'"')
    cost = _cost(len(raw), quotes // 2, *counts)
    if cost <= PARSE_FACTOR * len(raw) or not quotes:
        return cost
    plain = (
        raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw
    )  # every quote left is real
    if quotes <= _FEW_QUOTES:  # e.g. 32 MiB of {} under a few keys: find the strings one by one
        spans = _string_spans(plain)
        inside = [sum(plain.count(c, start, end) for start, end in spans) for c in _STRUCTURE]
        return _cost(len(raw), len(spans), *(n - i for n, i in zip(counts, inside, strict=True)))
    shape = plain.translate(None, _SHAPE)
    strings = shape.count(b'"') // 2
    parts = shape.replace(b'""', b"").split(b'"')  # strings without a structural byte vanish first
    return _cost(len(raw), strings, *_counts(b"".join(parts[0::2])))


def _counts(shape: bytes) -> tuple[int, ...]:
    return tuple(shape.count(c) for c in _STRUCTURE)


def _cost(size: int, strings: int, braces: int, brackets: int, commas: int, colons: int) -> int:
    containers, separators = braces + brackets, commas + colons
    return _BASE * size + _CONTAINER * containers + _STRING * strings + _SEPARATOR * separators


def _string_spans(plain: bytes) -> list[tuple[int, int]]:
    """(start, end) of every string in ``plain``, a body without escaped quotes."""
    spans: list[tuple[int, int]] = []
    start = plain.find(b'"')
    while start >= 0:
        end = plain.find(b'"', start + 1)
        if end < 0:
            spans.append((start, len(plain)))  # not closed: the rest is one string (orjson refuses it)
            break
        spans.append((start, end + 1))
        start = plain.find(b'"', end + 1)
    return spans


def _too_costly(size: int, cost: int) -> BodyTooLarge:
    return BodyTooLarge(
        f"The request body ({size / MIB:.1f} MiB) is JSON made of very many small values (objects, "
        f"arrays, short strings or numbers): parsing it would take about {cost / MIB:.0f} MiB, more than "
        f"{PARSE_FACTOR} times its size, which is corral's limit for bodies over {SCAN_FROM // MIB} MiB "
        "(a fixed limit, not a setting). Send the same data as fewer, larger values (text in one "
        "string, no empty objects), or split it across requests.",
        code="body_too_complex",
    )


def check_name(value: str, param: str = "model") -> str:
    """``value``, a client-chosen model name, if it is short and plain (it is cached as a route,
    echoed in the x-corral-model header and logged); else a 400 naming ``param``."""
    if len(value) > MAX_NAME:
        raise InvalidRequest(
            f"'{param}' is {len(value)} characters long; model names are at most {MAX_NAME}. "
            "GET /v1/models lists the models this gateway serves.",
            param=param,
            code="invalid_model",
        )
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise InvalidRequest(
            f"'{param}' contains the control or separator character U+{ord(bad):04X}; model names "
            "are printable text. GET /v1/models lists the models this gateway serves.",
            param=param,
            code="invalid_model",
        )
    return value


def refuse_shadowing(body: dict[str, Any], fields: frozenset[str]) -> None:
    """A 400 naming the first key of ``body`` (or of its ``options``) that is not one of
    ``fields`` but that an upstream reading keys case-insensitively would take for one."""
    path = shadowing_path(body, fields)
    if path is None:
        return
    key = path.rpartition(".")[2]
    field = path[: len(path) - len(key)] + key.casefold()
    raise InvalidRequest(
        f"'{path}' is not a field name: field names are lower case, and an upstream that reads "
        f"them case-insensitively (Ollama, any server written in Go) would take it for '{field}', "
        f"overriding the value corral checked. Send '{field}' only.",
        param=path,
        code="invalid_field",
    )
