"""Where the usage writer puts records: the ``UsageSink`` protocol and the database sink.

``StoreSink.write`` inserts a whole batch in ONE transaction with ``ON CONFLICT (request_id)
DO NOTHING`` (PostgreSQL and SQLite alike), so writing a batch again after a failure whose
outcome was unknown, or replaying the spill file twice, never counts a request twice. On
SQLite the transaction starts with ``BEGIN IMMEDIATE`` like every other store write. It either
commits every row or raises; a write that takes longer than ``timeout`` is abandoned (and
rolled back) so a hung database turns into an error the writer can back off from.

The insert is one prepared statement run with ``executemany`` over plain tuples
(``UsageRecord.to_values``), not a SQLAlchemy Core insert: this runs on the gateway's own core
once per request, and SQLAlchemy's per-row bind processing cost more than SQLite's insert
itself. On SQLite the rows go ``SQLITE_ROWS_PER_STATEMENT`` to a statement: the driver runs in
aiosqlite's thread and hands the GIL back and forth around every statement it steps, and with
one row per statement that ping-pong with a busy event loop made 10,000 rows take ~5 s and
~150-250 us of CPU each; 43 rows a statement take ~0.6 s (``bench/usage_insert.py``).
Timestamps are passed as SQLAlchemy stores them on SQLite (``YYYY-MM-DD
HH:MM:SS.ffffff``, UTC) so rows read back through the ``usage`` table are the same; a test
checks the round trip on both databases.

Errors that say the data itself is wrong (``DataError``, ``IntegrityError``: retrying cannot
help) are raised as ``RecordsRefused``; the writer then writes the batch one record at a time
and sets the refused records aside instead of retrying them forever. Every other error (the
database down, slow, misconfigured) is raised as it is, and the writer retries later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC
from itertools import chain
from typing import Any, Protocol

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.store.access import Access
from corral.usage.record import FIELD_NAMES, UsageRecord

# As many rows as fit in 999 parameters, the limit of SQLite builds before 3.32.
SQLITE_ROWS_PER_STATEMENT = 999 // len(FIELD_NAMES)
DEFAULT_TIMEOUT = 30.0


class RecordsRefused(Exception):
    """The database refused the data of a batch (not its availability): retrying cannot help."""


class UsageSink(Protocol):
    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Store ``records`` in one transaction, idempotently on ``request_id``; raise if not committed.

        Raise ``RecordsRefused`` when the data itself is refused, anything else when the store
        could not be reached or did not answer.
        """
        ...


class StoreSink:
    """The ``usage`` table of the store's database (SQLite or PostgreSQL)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        rows_per_statement: int = SQLITE_ROWS_PER_STATEMENT,
    ) -> None:
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ValueError(f"usage records need PostgreSQL or SQLite, not {dialect!r}")
        self._access = Access.of(engine)
        self._sqlite = dialect == "sqlite"
        self._statement = insert_statement(dialect)
        self._chunk = rows_per_statement  # on SQLite; PostgreSQL takes one row a statement
        self._chunk_statement = insert_statement(dialect, rows_per_statement)
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"StoreSink({self._access.engine.dialect.name})"

    async def write(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        rows = [record.to_values() for record in records]
        chunks: list[tuple[Any, ...]] = []
        if self._sqlite:
            rows = [(row[0], _sqlite_time(row[1]), *row[2:]) for row in rows]
            whole = len(rows) - len(rows) % self._chunk
            chunks = [
                tuple(chain.from_iterable(rows[i : i + self._chunk])) for i in range(0, whole, self._chunk)
            ]
            rows = rows[whole:]
        try:
            async with asyncio.timeout(self._timeout), self._access.write() as conn:
                if chunks:
                    await conn.exec_driver_sql(self._chunk_statement, chunks)
                if rows:
                    await conn.exec_driver_sql(self._statement, rows)
        except (DataError, IntegrityError) as exc:
            reason = (str(exc.orig or exc).strip().splitlines() or ["?"])[0][:200]
            raise RecordsRefused(
                f"the database refused a usage batch: {type(exc).__name__}: {reason}"
            ) from exc


def insert_statement(dialect: str, rows: int = 1) -> str:
    """The idempotent insert of ``rows`` records' ``FIELD_NAMES`` columns, in the driver's
    parameter style."""
    columns = ", ".join(f'"{name}"' for name in FIELD_NAMES)
    width = len(FIELD_NAMES)
    if dialect == "sqlite":
        values = ", ".join("(" + ", ".join("?" * width) + ")" for _ in range(rows))
    else:  # asyncpg
        values = ", ".join(
            "(" + ", ".join(f"${r * width + c}" for c in range(1, width + 1)) + ")" for r in range(rows)
        )
    # Built from the record's own field names, never from input: the values are bound parameters.
    return f"INSERT INTO usage ({columns}) VALUES {values} ON CONFLICT (request_id) DO NOTHING"  # noqa: S608


def _sqlite_time(at: Any) -> str:
    """An aware datetime as SQLAlchemy's SQLite ``DateTime`` stores it: naive UTC with microseconds."""
    return str(at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds"))


__all__ = ["RecordsRefused", "StoreSink", "UsageSink", "insert_statement"]
