"""The SQLite sink's own writing thread (corral.usage.sqlite_batch) against a real database file:
a write held up by another writer's lock times out and leaves nothing behind, the next write
goes through, rows and rollup agree, and a batch the database refuses is reported as refused."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from corral.security.crypto import Crypto
from corral.store import Store, open_store
from corral.store.tables import usage
from corral.usage import StoreSink
from corral.usage.record import FIELD_NAMES
from corral.usage.sink import RecordsRefused
from corral.usage.sqlite_batch import SQLiteBatches
from tests.usage.factory import records


@pytest.fixture
async def sqlite_store(tmp_path: Path, crypto: Crypto) -> Store:
    store = await open_store(f"sqlite:///{tmp_path / 'corral.db'}", crypto=crypto)
    yield store  # type: ignore[misc]
    await store.close()


async def rows_in(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(usage))).scalar_one())


async def rollup_requests(store: Store) -> int:
    async with store.engine.connect() as conn:
        found = await conn.exec_driver_sql(
            "SELECT SUM(requests) FROM usage_rollup WHERE grain = 3600 AND dim = ''"
        )
        return int(found.scalar_one() or 0)


async def test_the_file_sink_writes_on_its_own_thread(sqlite_store: Store) -> None:
    sink = StoreSink(sqlite_store.engine)
    try:
        assert sink._batches is not None  # a file: not through aiosqlite
        await sink.write(records(120))
        await sink.write(records(120))  # the same ids again: stored once, counted once
        assert await rows_in(sqlite_store) == 120
        assert await rollup_requests(sqlite_store) == 120
    finally:
        sink.close()


async def test_a_write_held_up_by_a_lock_times_out_and_leaves_nothing(
    sqlite_store: Store, tmp_path: Path
) -> None:
    sink = StoreSink(sqlite_store.engine, timeout=0.3)
    locker = sqlite3.connect(tmp_path / "corral.db", isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the database
        started = time.monotonic()
        with pytest.raises((TimeoutError, sqlite3.OperationalError)):  # "database is locked"
            await sink.write(records(50))
        assert time.monotonic() - started < 5  # the store's busy timeout is 30 s: the write was cut
        locker.execute("ROLLBACK")
        await sink.write(records(10, start=1000))  # the thread is free again
        assert await rows_in(sqlite_store) == 10  # the interrupted batch left no row
        assert await rollup_requests(sqlite_store) == 10
    finally:
        locker.close()
        sink.close()


async def test_a_refused_batch_is_reported_as_refused(sqlite_store: Store, tmp_path: Path) -> None:
    batches = SQLiteBatches(str(tmp_path / "corral.db"))
    try:
        with pytest.raises(sqlite3.IntegrityError):  # the sink maps this to RecordsRefused
            await batches.write(
                [], lambda stored: [("INSERT INTO usage (request_id) VALUES (?)", (None,))], 5
            )
    finally:
        batches.close()
    sink = StoreSink(sqlite_store.engine)
    marks = ", ".join("?" * len(FIELD_NAMES))  # the record's values, and a NULL a NOT NULL column refuses
    sink._statement = f"INSERT INTO usage (request_id) SELECT NULL FROM (SELECT {marks})"
    sink._chunk = 1_000_000  # every row through that one statement
    try:
        with pytest.raises(RecordsRefused, match="IntegrityError"):
            await sink.write(records(1))
    finally:
        sink.close()
    assert await rows_in(sqlite_store) == 0
