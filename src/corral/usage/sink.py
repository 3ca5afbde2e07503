"""Where the usage writer puts records: the ``UsageSink`` protocol and the database sink.

``StoreSink.write`` inserts a whole batch in ONE transaction with ``ON CONFLICT (request_id)
DO NOTHING`` (PostgreSQL and SQLite alike), so writing a batch again after a failure whose
outcome was unknown, or replaying the spill file twice, never counts a request twice. On
SQLite the transaction starts with ``BEGIN IMMEDIATE`` like every other store write. It either
commits every row or raises; a write that takes longer than ``timeout`` is abandoned (and
rolled back) so a hung database turns into an error the writer can back off from.

On a SQLite file the whole batch goes to the sink's own thread in one call
(``corral.usage.sqlite_batch``, the ``sqlite3`` module): through the engine each statement was a
round trip to aiosqlite's thread, 20 us or more of CPU per record under load. An in-memory
database (tests) and PostgreSQL go through the engine.

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

The same transaction adds the rows it really inserts to the rollup (``corral.usage.rollup``):
it first asks which of the batch's request ids are stored already (a replay, or a retry whose
commit went through), leaves those out, and upserts the rest's totals; every
``rollup.PRUNE_EVERY`` seconds it also deletes the minute rows the readers no longer use. A
writer writes one batch at a time and request ids are unique per gateway, so no other
transaction inserts the same ids meanwhile.

Errors that say the data itself is wrong (``DataError``, ``IntegrityError``: retrying cannot
help) are raised as ``RecordsRefused``; the writer then writes the batch one record at a time
and sets the refused records aside instead of retrying them forever. Every other error (the
database down, slow, misconfigured) is raised as it is, and the writer retries later.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC
from itertools import chain
from typing import Any, Protocol

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from corral.store.access import Access
from corral.store.db import sqlite_in_memory
from corral.usage import rollup
from corral.usage.record import FIELD_NAMES, UsageRecord
from corral.usage.sqlite_batch import STORED_PER_QUERY, SQLiteBatches, Step, stored_statement

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
        keep_rollup: bool = True,
    ) -> None:
        """``keep_rollup=False`` leaves the rollup alone: only to measure what keeping it costs
        (``bench/usage_insert.py``); queries over long ranges are then wrong."""
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ValueError(f"usage records need PostgreSQL or SQLite, not {dialect!r}")
        self._access = Access.of(engine)
        self._sqlite = dialect == "sqlite"
        self._statement = insert_statement(dialect)
        self._chunk = rows_per_statement  # on SQLite; PostgreSQL takes one row a statement
        self._chunk_statement = insert_statement(dialect, rows_per_statement)
        self._timeout = timeout
        self._dialect = dialect
        self._upsert = rollup.upsert_statement(dialect)
        self._upsert_chunk = rollup.upsert_statement(dialect, rollup.SQLITE_ROWS_PER_STATEMENT)
        self._pruned = 0.0  # monotonic time of the last prune of old minute rows
        self._rollup = keep_rollup
        # a SQLite file: each batch in one call on a thread of its own (corral.usage.sqlite_batch);
        # an in-memory database is only visible through the engine's own connections
        memory = sqlite_in_memory(engine.url.database)
        self._batches = SQLiteBatches(str(engine.url.database)) if self._sqlite and not memory else None

    def __repr__(self) -> str:
        return f"StoreSink({self._access.engine.dialect.name})"

    async def write(self, records: Sequence[UsageRecord]) -> None:
        if not records:
            return
        values = [record.to_values() for record in records]
        rows = values
        chunks: list[tuple[Any, ...]] = []
        if self._sqlite:
            rows = [(row[0], _sqlite_time(row[1]), *row[2:]) for row in rows]
            whole = len(rows) - len(rows) % self._chunk
            chunks = [
                tuple(chain.from_iterable(rows[i : i + self._chunk])) for i in range(0, whole, self._chunk)
            ]
            rows = rows[whole:]
        inserts: list[Step] = []
        if chunks:
            inserts.append((self._chunk_statement, chunks))
        if rows:
            inserts.append((self._statement, rows))

        def plan(stored: set[str]) -> list[Step]:
            return inserts + self._rollup_steps(values, stored) if self._rollup else inserts

        ids = [row[0] for row in values]
        if self._batches is not None:
            try:
                await self._batches.write(ids, plan, self._timeout)
            except (sqlite3.DataError, sqlite3.IntegrityError) as exc:
                raise _refused(exc) from exc
            return
        try:
            async with asyncio.timeout(self._timeout), self._access.write() as conn:
                stored = await self._stored(conn, ids) if self._rollup else set()
                for statement, params in plan(stored):
                    await conn.exec_driver_sql(statement, params)
        except (DataError, IntegrityError) as exc:
            raise _refused(exc.orig or exc) from exc

    def close(self) -> None:
        """Stop the SQLite file's writing thread, if there is one (the engine is the store's)."""
        if self._batches is not None:
            self._batches.close()

    async def _stored(self, conn: AsyncConnection, ids: list[str]) -> set[str]:
        """Which of ``ids`` the usage table holds already."""
        found: set[str] = set()
        if self._sqlite:
            for first in range(0, len(ids), STORED_PER_QUERY):
                part = ids[first : first + STORED_PER_QUERY]
                rows = await conn.exec_driver_sql(stored_statement(len(part)), tuple(part))
                found.update(r[0] for r in rows)
        else:
            result = await conn.exec_driver_sql(
                "SELECT request_id FROM usage WHERE request_id = ANY($1::text[])", (ids,)
            )
            found.update(r[0] for r in result)
        return found

    def _rollup_steps(self, rows: list[tuple[Any, ...]], stored: set[str]) -> list[Step]:
        """The statements that add the rows this transaction inserts (those not in ``stored``) to
        the rollup, and now and then the prune of old minute rows."""
        seen = set(stored)
        fresh = []
        for row in rows:
            if row[0] not in seen:  # ON CONFLICT DO NOTHING keeps the first of a repeated id
                seen.add(row[0])
                fresh.append(row)
        values = rollup.upsert_rows(rollup.aggregate(fresh))
        steps: list[Step] = []
        if self._sqlite:
            size = rollup.SQLITE_ROWS_PER_STATEMENT
            whole = len(values) - len(values) % size
            if whole:
                chunks = [tuple(chain.from_iterable(values[i : i + size])) for i in range(0, whole, size)]
                steps.append((self._upsert_chunk, chunks))
            values = values[whole:]
        if values:
            steps.append((self._upsert, values))
        if time.monotonic() - self._pruned >= rollup.PRUNE_EVERY:
            self._pruned = time.monotonic()
            steps.append((rollup.prune_statement(self._dialect), (rollup.prune_before(),)))
        return steps


def _refused(exc: BaseException) -> RecordsRefused:
    reason = (str(exc).strip().splitlines() or ["?"])[0][:200]
    return RecordsRefused(f"the database refused a usage batch: {type(exc).__name__}: {reason}")


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
