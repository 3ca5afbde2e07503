"""What every repository needs: the engines to read and write with, the clock, and input checks.

Writes go through ``Access.write()``: one transaction, ``BEGIN IMMEDIATE`` on SQLite (so a
read-then-write never dead-ends in "database is locked") and a plain transaction on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from corral.errors import InvalidRequest

Clock = Callable[[], datetime]
WRITE_OPTION = "corral_write"  # execution option the SQLite "begin" hook reads


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Access:
    engine: AsyncEngine
    writer: AsyncEngine  # the same pool, tagged so SQLite begins with BEGIN IMMEDIATE
    clock: Clock

    @classmethod
    def of(cls, engine: AsyncEngine, clock: Clock = utc_now) -> Access:
        return cls(engine, engine.execution_options(**{WRITE_OPTION: True}), clock)

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.engine.connect()

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return self.writer.begin()

    def now(self) -> datetime:
        value = self.clock()
        if value.tzinfo is None:
            raise ValueError("the store clock must return timezone-aware datetimes")
        return value.astimezone(UTC)


def check_name(kind: str, name: object, max_len: int) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest(f"The {kind} name must be a non-empty string.", param="name")
    if len(name) > max_len:
        raise InvalidRequest(
            f"The {kind} name is longer than {max_len} characters; shorten it.", param="name"
        )
    if name != name.strip() or any(ord(ch) < 32 for ch in name):
        raise InvalidRequest(
            f"The {kind} name must not start or end with spaces or contain control characters.", param="name"
        )
    return name


def check_optional_text(field: str, value: object, max_len: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidRequest(
            f"'{field}' must be a string of at most {max_len} characters, or null.", param=field
        )
    return value


def json_object(field: str, value: object) -> dict[str, Any]:
    """A JSON-serialisable object with string keys (a deep copy, so callers cannot mutate it later)."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidRequest(f"'{field}' must be a JSON object with string keys.", param=field)
    try:
        copied = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError):
        raise InvalidRequest(
            f"'{field}' must contain only JSON values (strings, numbers, booleans, null, lists, objects).",
            param=field,
        ) from None
    assert isinstance(copied, dict)
    return copied


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
