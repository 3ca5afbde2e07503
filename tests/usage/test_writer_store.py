"""UsageWriter with the real StoreSink on SQLite and PostgreSQL: exactly N rows through outages."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import func, select

from corral.security.crypto import Crypto
from corral.store import Store, open_store
from corral.store.db import create_engine, normalize_url
from corral.store.tables import usage
from corral.usage import StoreSink, UsageRecord, UsageWriter
from corral.usage.spill import SpillFile
from tests.support.databases import connect, fetch
from tests.usage.factory import record, records, submit_until, wait_for
from tests.usage.test_writer import FAST, running, spilled_ids, submit_concurrently


async def counts(store: Store) -> tuple[int, int]:
    """(rows, distinct request ids) in the usage table."""
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(func.count(), func.count(func.distinct(usage.c.request_id))))).one()
    return int(row[0]), int(row[1])


class SwitchSink:
    """The real sink, or (while ``down``) another real sink whose database is unreachable."""

    def __init__(self, up: StoreSink, down: StoreSink | None = None) -> None:
        self.up, self.down_sink = up, down
        self.down = False

    async def write(self, records: Sequence[UsageRecord]) -> None:
        if not self.down:
            await self.up.write(records)
        elif self.down_sink is not None:
            await self.down_sink.write(records)
        else:
            raise ConnectionResetError("the database went away")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def unreachable_sink(database_url: str, tmp_path: Path) -> AsyncIterator[StoreSink]:
    """A StoreSink on the same kind of database: at a closed port, or a file that is not a database."""
    if database_url.startswith("postgresql"):
        url = normalize_url(database_url.replace("127.0.0.1:5432", f"127.0.0.1:{closed_port()}"))
    else:
        broken = tmp_path / "broken.db"
        broken.write_bytes(b"this is not a database" * 100)
        url = f"sqlite+aiosqlite:///{broken}"
    engine = create_engine(url)
    try:
        yield StoreSink(engine, timeout=2)
    finally:
        await engine.dispose()


async def test_concurrent_submits_become_exactly_n_rows(store: Store, tmp_path: Path) -> None:
    writer = UsageWriter(StoreSink(store.engine), tmp_path / "spill.jsonl", batch_size=100, **FAST)
    async with running(writer):
        await submit_concurrently(writer, records(2000))
        await wait_for(lambda: writer.stats.written == 2000)
    assert await counts(store) == (2000, 2000)
    assert writer.stats.dropped == 0 and writer.stats.spilled == 0


async def test_the_database_unreachable_for_a_while_loses_nothing(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    async with unreachable_sink(database_url, tmp_path) as dead:
        sink = SwitchSink(StoreSink(store.engine), dead)
        writer = UsageWriter(sink, tmp_path / "spill.jsonl", batch_size=50, max_queue=200, **FAST)
        async with running(writer):
            await submit_concurrently(writer, records(500))  # 300 overflow to the spill file
            await wait_for(lambda: writer.stats.written + writer.stats.replayed == 500)
            sink.down = True
            await submit_concurrently(writer, records(1000, start=500))
            await wait_for(lambda: writer.stats.sink_errors >= 2 and writer.stats.queue_depth == 0)
            assert writer.stats.spilled >= 1000
            sink.down = False
            await submit_concurrently(writer, records(500, start=1500))
            await wait_for(lambda: writer.stats.written + writer.stats.replayed >= 2000, timeout=20)
            await wait_for(lambda: not SpillFile(writer.spill_path).pending())
    assert await counts(store) == (2000, 2000)
    assert writer.stats.dropped == 0 and writer.stats.rejected == 0


async def test_connections_killed_mid_write_lose_nothing(
    postgres_url: str, crypto: Crypto, tmp_path: Path
) -> None:
    """A real mid-transaction failure: the INSERT waits on a lock, then its backend is killed."""
    store = await open_store(postgres_url, crypto=crypto)
    locker = await connect(postgres_url)
    try:
        writer = UsageWriter(StoreSink(store.engine), tmp_path / "spill.jsonl", batch_size=50, **FAST)
        async with running(writer):
            rounds = 3
            for part in range(rounds):
                async with locker.transaction():
                    await locker.execute("LOCK TABLE usage IN ACCESS EXCLUSIVE MODE")
                    await submit_concurrently(writer, records(300, start=part * 300))
                    killed: list[object] = []
                    while not killed:  # wait for the writer's transaction to block on the lock, then kill it
                        killed = await fetch(  # a new connection: pg_stat_activity is per-transaction
                            postgres_url,
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND state = 'active' AND (query LIKE 'INSERT INTO usage%' "
                            "OR query LIKE 'SELECT request_id FROM usage%')",  # its first look at the table
                        )
                        await asyncio.sleep(0.01)
                await wait_for(lambda errors=part: writer.stats.sink_errors > errors)
            await submit_concurrently(writer, records(100, start=rounds * 300))
            await wait_for(lambda: writer.stats.written + writer.stats.replayed >= 1000, timeout=30)
            await wait_for(lambda: not SpillFile(writer.spill_path).pending(), timeout=30)
        assert await counts(store) == (1000, 1000)
        assert writer.stats.dropped == 0 and writer.stats.sink_errors >= rounds and writer.stats.spilled > 0
    finally:
        await locker.close()
        await store.close()


async def test_close_during_a_stream_then_the_next_writer_brings_everything_in(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "spill.jsonl"
    sink = SwitchSink(StoreSink(store.engine))
    writer = UsageWriter(sink, path, batch_size=50, **FAST)
    submitted: list[str] = []
    stop = asyncio.Event()

    task = asyncio.create_task(writer.run())
    producer = asyncio.create_task(submit_until(writer, stop, submitted, pause_every=10))
    await wait_for(lambda: writer.stats.written > 300)
    sink.down = True  # and the database fails just as we shut down
    await writer.close(timeout=1)
    await asyncio.sleep(0.02)
    stop.set()
    await producer
    await task
    assert writer.stats.dropped == 0
    rows, _ = await counts(store)
    assert rows < len(submitted)
    assert len(spilled_ids(path)) + rows >= len(submitted)

    sink.down = False
    after = UsageWriter(sink, path, batch_size=50, **FAST)
    async with running(after):
        await wait_for(lambda: not SpillFile(path).pending(), timeout=20)
    assert await counts(store) == (len(submitted), len(submitted))
    assert after.stats.dropped == 0 and after.stats.rejected == 0


async def test_a_stop_mid_replay_then_a_new_writer_gives_exactly_n(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "spill.jsonl"
    spill = SpillFile(path)
    spill.append(records(3000))
    spill.close()

    class SlowSink(StoreSink):
        async def write(self, records: Sequence[UsageRecord]) -> None:
            await asyncio.sleep(0.01)  # a stop here: nothing committed
            await super().write(records)
            await asyncio.sleep(0.01)  # a stop here: committed, the cursor not moved yet

    slow = UsageWriter(SlowSink(store.engine), path, batch_size=100, **FAST)
    task = asyncio.create_task(slow.run())
    await wait_for(lambda: slow.stats.replayed >= 500)
    await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    rows, _ = await counts(store)
    assert 0 < rows < 3000

    last = UsageWriter(StoreSink(store.engine), path, batch_size=100, **FAST)
    async with running(last):
        await wait_for(lambda: not SpillFile(path).pending(), timeout=20)
    assert await counts(store) == (3000, 3000)
    assert last.stats.replayed >= 3000 - rows  # re-played records did not add rows
    assert last.stats.rejected == 0 and last.stats.dropped == 0


async def test_inserts_are_idempotent_on_request_id(store: Store) -> None:
    sink = StoreSink(store.engine)
    await sink.write(records(10))
    await sink.write([*records(5, start=5), *records(5, start=5), record(99)])
    await sink.write([])
    assert await counts(store) == (11, 11)


async def test_rows_read_back_through_the_table_equal_the_records(store: Store) -> None:
    """The lean insert stores values exactly as the SQLAlchemy ``usage`` table reads and filters them."""
    at = datetime(2026, 3, 1, 23, 30, 5, 123456, tzinfo=timezone(timedelta(hours=-5)))  # not UTC
    full = record(
        1, at=at, user="zoë \x00<b>", error_class="upstream_timeout", client_request_id="trace-7", attempts=3,
        fallback=True, streamed=True, status=502, tokens_estimated=True, cost_usd=0.25, ttft_ms=12.5,
        upstream_ms=80.0, overhead_ms=0.4,
    )  # fmt: skip
    bare = UsageRecord(request_id="req-bare", at=datetime(2026, 3, 3, tzinfo=UTC), requested_model="m")
    await StoreSink(store.engine).write([full, bare])
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(usage).order_by(usage.c.at))).mappings().all()
        in_range = (
            (
                await conn.execute(
                    select(usage.c.request_id).where(
                        usage.c.at >= at - timedelta(microseconds=1),
                        usage.c.at < at + timedelta(microseconds=1),
                    )
                )
            )
            .scalars()
            .all()
        )
    assert [UsageRecord.from_row(row) for row in rows] == [
        UsageRecord.from_row(full.to_row()),
        UsageRecord.from_row(bare.to_row()),
    ]
    assert rows[0]["at"] == at and rows[0]["user"] == "zoë <b>"
    assert in_range == ["req-000001"]


async def test_multi_row_statements_stay_idempotent_with_duplicates_inside_one_statement(
    store: Store,
) -> None:
    sink = StoreSink(store.engine)
    await sink.write(records(100))  # two 43-row statements and a 14-row remainder on SQLite
    await sink.write([*records(60, start=80), *records(60, start=80)])  # repeats, also within a statement
    assert await counts(store) == (140, 140)
    async with store.engine.connect() as conn:
        ids = (await conn.execute(select(usage.c.request_id).order_by(usage.c.request_id))).scalars().all()
    assert ids == [f"req-{i:06d}" for i in range(140)]
