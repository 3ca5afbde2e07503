"""Strict, hand-written input checks for the admin API.

Bodies are JSON objects of bounded size and depth; strings never carry NUL characters (no
database stores them); unknown fields are refused by the validator of each object; path names
that cannot exist are a 404 before any lookup; query parameters are parsed with bounds. Every
error is an ``InvalidRequest`` (400) whose message names the field and says what is expected.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from corral.errors import ConfigError, InvalidRequest, NotFound
from corral.http.bodies import read_body

MAX_BODY = 1024 * 1024
MAX_DEPTH = 64  # objects and arrays inside each other
_FIELD = re.compile(r"^(?:provider|alias) '[^']*'\.([A-Za-z_]+)")
_KEY_ID = re.compile(r"\A[0-9A-Za-z]{8}\Z")


async def read_object(request: web.Request, limit: int = MAX_BODY) -> dict[str, Any]:
    """The request body as a JSON object (at most ``limit`` bytes, read as it arrives and counted
    in the shared body budget; no NUL characters)."""
    raw = await read_body(request, limit)
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON ({exc}).", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"The request body must be a JSON object, not {_json_type(data)}.", code="invalid_json"
        )
    _no_nul(data, "")
    return data


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _no_nul(value: object, where: str) -> None:
    """No NUL in any string of ``value`` (keys included), and nothing nested deeper than
    ``MAX_DEPTH``; walked without recursion, so no body can exhaust the stack."""
    stack: list[tuple[object, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidRequest(
                    f"'{path or 'body'}' contains a NUL character (\\u0000), which cannot be stored.",
                    param=path or None,
                )
            continue
        if not isinstance(item, dict | list):
            continue
        if depth >= MAX_DEPTH:
            raise InvalidRequest(
                f"'{path or 'body'}' is nested more than {MAX_DEPTH} levels deep; the admin API takes "
                "flatter objects.",
                param=path or None,
                code="too_deep",
            )
        children: list[tuple[object, str, int]] = []  # in order; pushed reversed, so taken in order
        if isinstance(item, dict):
            for key, inner in item.items():
                inner_path = f"{path}.{key}" if path else str(key)
                children += [(key, inner_path, depth + 1), (inner, inner_path, depth + 1)]
        else:
            children = [(inner, f"{path}[{i}]", depth + 1) for i, inner in enumerate(item)]
        stack.extend(reversed(children))


def reject_unknown(data: Mapping[str, Any], allowed: Iterable[str], kind: str) -> None:
    known = set(allowed)
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"Did you mean '{close[0]}'?" if close else f"Allowed fields: {', '.join(sorted(known))}."
        raise InvalidRequest(f"Unknown field '{unknown[0]}' in the {kind}. {hint}", param=unknown[0])


def text(data: Mapping[str, Any], field: str, max_len: int) -> None:
    """``data[field]``, when present and not null, is a string of at most ``max_len`` characters."""
    value = data.get(field)
    if value is not None and (not isinstance(value, str) or len(value) > max_len):
        raise InvalidRequest(
            f"'{field}' must be a string of at most {max_len} characters, or null.", param=field
        )


def from_config_error(exc: ConfigError) -> InvalidRequest:
    """A validation error of the config loader, as a 400 naming the field."""
    message = str(exc).removeprefix("database: ")
    match = _FIELD.match(message)
    return InvalidRequest(message, code="invalid_config", param=match.group(1) if match else None)


def timestamp(value: object, field: str, *, digits: bool = False) -> datetime:
    """An instant given as ISO 8601 with a time zone, or as Unix seconds: a JSON number, or
    (``digits``, for query strings) a string of digits."""
    if isinstance(value, str):
        raw = value.strip()
        try:
            return _from_unix(float(raw), field) if digits and _is_number(raw) else _from_iso(raw, field)
        except ValueError:
            pass
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return _from_unix(float(value), field)
    raise InvalidRequest(
        f"'{field}' must be an ISO 8601 time with a time zone (e.g. 2030-01-31T12:00:00Z) or Unix seconds.",
        param=field,
    )


def _is_number(raw: str) -> bool:
    return re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", raw) is not None


def _from_unix(seconds: float, field: str) -> datetime:
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidRequest(f"'{field}' must be a non-negative number of Unix seconds.", param=field)
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidRequest(f"'{field}' is out of range (years 1970 to 9999).", param=field) from None


def _from_iso(raw: str, field: str) -> datetime:
    parsed = datetime.fromisoformat(raw)  # ValueError: not ISO 8601
    if parsed.tzinfo is None:
        raise InvalidRequest(
            f"'{field}' has no time zone; add one (e.g. 'Z' for UTC: 2030-01-31T12:00:00Z).", param=field
        )
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidRequest(f"'{field}' is out of range (years 1 to 9999).", param=field) from None


def query_int(request: web.Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = int(raw) if re.fullmatch(r"-?[0-9]{1,12}", raw) else None
    if value is None or not minimum <= value <= maximum:
        raise InvalidRequest(f"'{name}' must be a whole number from {minimum} to {maximum}.", param=name)
    return value


def query_text(request: web.Request, name: str, max_len: int) -> str | None:
    raw = request.query.get(name)
    if raw is not None and (len(raw) > max_len or "\x00" in raw):
        raise InvalidRequest(
            f"'{name}' must be at most {max_len} characters, without NUL characters.", param=name
        )
    return raw


def reject_unknown_query(request: web.Request, allowed: Iterable[str]) -> None:
    known = set(allowed)
    for name in request.query:
        if name not in known:
            hint = f" Known: {', '.join(sorted(known))}." if known else " This route takes none."
            raise InvalidRequest(f"Unknown query parameter '{name}'.{hint}", param=name)


def path_name(request: web.Request, kind: str, max_len: int) -> str:
    """The ``{name}`` of the path; a name no object can have is a 404 at once."""
    name = request.match_info["name"]
    if not name or len(name) > max_len or any(ord(ch) < 32 for ch in name):
        raise NotFound(
            f"There is no {kind} with that name. List the {kind}s to see which exist.",
            code=f"{kind}_not_found",
        )
    return name


def key_id(request: web.Request) -> str:
    value = request.match_info["id"]
    if _KEY_ID.match(value) is None:
        raise NotFound(
            "There is no gateway key with that id (ids are 8 letters and digits). "
            "GET /admin/keys lists them.",
            code="gateway_key_not_found",
        )
    return value
