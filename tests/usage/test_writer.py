"""UsageWriter with a fake sink: batching, ack after commit, spill on outage and overflow, close."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.usage import UsageRecord, UsageWriter
from corral.usage.spill import SpillFile
from tests.usage.factory import FakeSink, record, records, submit_until, wait_for

FAST: dict[str, Any] = {"flush_interval": 0.01, "retry_backoff": 0.02}


@contextlib.asynccontextmanager
async def running(writer: UsageWriter) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(writer.run())
    try:
        yield task
    finally:
        await writer.close(timeout=5)
        await asyncio.wait({task}, timeout=5)
        assert task.done()


def spilled_ids(path: Path) -> set[str]:
    """Every request id waiting in the spill files at ``path`` (replay file included)."""
    spill = SpillFile(path)
    found: set[str] = set()
    for file in (spill.replay_path, spill.path):
        if file.exists():
            found |= {orjson.loads(line)["request_id"] for line in file.read_bytes().splitlines() if line}
    return found


async def submit_concurrently(writer: UsageWriter, items: list[UsageRecord], tasks: int = 20) -> None:
    async def producer(part: list[UsageRecord]) -> None:
        for i, item in enumerate(part):
            writer.submit(item)
            if i % 7 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(producer(items[i::tasks]) for i in range(tasks)))


async def test_concurrent_submits_become_exactly_n_rows_in_batches(tmp_path: Path) -> None:
    sink = FakeSink()
    writer = UsageWriter(sink, tmp_path / "spill.jsonl", batch_size=50, **FAST)
    async with running(writer):
        await submit_concurrently(writer, records(1000))
        await wait_for(lambda: len(sink.rows) == 1000)
    assert sink.attempted == 1000  # nothing written twice when nothing failed
    assert max(sink.batch_sizes) <= 50 and len(sink.batch_sizes) < 100
    s = writer.stats
    assert (s.submitted, s.enqueued, s.written, s.spilled, s.dropped, s.queue_depth) == (
        1000,
        1000,
        1000,
        0,
        0,
        0,
    )


async def test_a_batch_leaves_the_queue_only_after_the_commit(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.gate = asyncio.Event()
    writer = UsageWriter(sink, tmp_path / "spill.jsonl", batch_size=10, **FAST)
    async with running(writer):
        for r in records(10):
            writer.submit(r)
        await wait_for(lambda: sink.calls == 1)
        await asyncio.sleep(0.05)
        assert writer.stats.queue_depth == 10 and not sink.rows  # in flight, still queued
        sink.gate.set()
        await wait_for(lambda: writer.stats.queue_depth == 0)
        assert len(sink.rows) == 10


async def test_an_outage_spills_and_recovery_replays_without_loss(tmp_path: Path) -> None:
    sink = FakeSink()
    writer = UsageWriter(sink, tmp_path / "spill.jsonl", batch_size=25, **FAST)
    async with running(writer):
        await submit_concurrently(writer, records(300))
        await wait_for(lambda: len(sink.rows) == 300)
        sink.down = True
        await submit_concurrently(writer, records(300, start=300))
        await wait_for(lambda: writer.stats.spilled >= 300 and writer.stats.queue_depth == 0)
        assert spilled_ids(writer.spill_path) == {r.request_id for r in records(300, start=300)}
        await submit_concurrently(writer, records(100, start=600))
        await asyncio.sleep(0.1)
        sink.down = False
        await wait_for(lambda: len(sink.rows) == 700)
        await wait_for(lambda: not SpillFile(writer.spill_path).pending())
    s = writer.stats
    assert s.dropped == 0 and s.sink_errors > 0 and s.replayed >= 300
    assert set(sink.rows) == {r.request_id for r in records(700)}


async def test_a_full_queue_spills_instead_of_dropping(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.gate = asyncio.Event()  # the database hangs
    writer = UsageWriter(sink, tmp_path / "spill.jsonl", max_queue=20, batch_size=10, **FAST)
    async with running(writer):
        for r in records(500):
            writer.submit(r)
        assert writer.stats.queue_depth == 20 and writer.stats.spilled == 480 and writer.stats.dropped == 0
        assert len(spilled_ids(writer.spill_path)) == 480
        sink.gate.set()
        await wait_for(lambda: len(sink.rows) == 500)
    assert writer.stats.dropped == 0 and writer.stats.replayed == 480


async def test_close_during_a_stream_of_submits_loses_nothing(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.delay = 0.005
    path = tmp_path / "spill.jsonl"
    writer = UsageWriter(sink, path, batch_size=20, **FAST)
    submitted: list[str] = []
    stop = asyncio.Event()

    task = asyncio.create_task(writer.run())
    producer = asyncio.create_task(submit_until(writer, stop, submitted, pause_every=5))
    await wait_for(lambda: len(sink.rows) > 200)
    await writer.close(timeout=2)  # the stream goes on through close and after it
    await asyncio.sleep(0.02)
    stop.set()
    await producer
    await task
    assert writer.stats.dropped == 0
    assert set(sink.rows) | spilled_ids(path) == set(submitted)
    after = UsageWriter(sink, path, **FAST)
    async with running(after):
        await wait_for(lambda: len(sink.rows) == len(submitted))
    assert set(sink.rows) == set(submitted)


async def test_close_with_the_database_down_spills_within_the_timeout(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.gate = asyncio.Event()  # hangs: the write never returns
    path = tmp_path / "spill.jsonl"
    writer = UsageWriter(sink, path, batch_size=10, **FAST)
    task = asyncio.create_task(writer.run())
    for r in records(95):
        writer.submit(r)
    await wait_for(lambda: sink.calls >= 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await writer.close(timeout=0.5)
    assert loop.time() - started < 0.8
    assert task.done()
    assert spilled_ids(path) == {r.request_id for r in records(95)}
    assert writer.stats.dropped == 0 and writer.stats.queue_depth == 0
    writer.submit(record(500))  # a straggler after close still lands on disk
    assert "req-000500" in spilled_ids(path)


async def test_close_without_run_writes_what_is_queued(tmp_path: Path) -> None:
    sink = FakeSink()
    writer = UsageWriter(sink, tmp_path / "spill.jsonl", batch_size=7)
    for r in records(30):
        writer.submit(r)
    await writer.close()
    assert len(sink.rows) == 30 and writer.stats.written == 30
    await writer.close()  # twice is fine


async def test_a_stop_in_the_middle_of_a_replay_then_a_new_writer_gives_exactly_n(tmp_path: Path) -> None:
    path = tmp_path / "spill.jsonl"
    down = FakeSink()
    down.down = True
    first = UsageWriter(down, path, batch_size=50, **FAST)
    for r in records(1000):
        first.submit(r)
    await first.close(timeout=0.2)
    assert len(spilled_ids(path)) == 1000

    sink = FakeSink()
    sink.delay = 0.01
    replaying = UsageWriter(sink, path, batch_size=50, **FAST)
    task = asyncio.create_task(replaying.run())
    await wait_for(lambda: sink.calls >= 5)
    task.cancel()  # a crash-like stop: no close()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert 0 < len(sink.rows) < 1000

    sink.delay = 0
    last = UsageWriter(sink, path, batch_size=50, **FAST)
    async with running(last):
        await wait_for(lambda: len(sink.rows) == 1000)
        await wait_for(lambda: not SpillFile(path).pending())
    assert sink.attempted >= 1000  # some were written twice; the sink counted each once
    assert last.stats.dropped == 0 and replaying.stats.dropped == 0


async def test_records_the_database_refuses_are_set_aside_not_retried_forever(tmp_path: Path) -> None:
    sink = FakeSink()
    sink.refuse = {"req-000007"}
    writer = UsageWriter(sink, tmp_path / "spill.jsonl", batch_size=10, **FAST)
    async with running(writer):
        for r in records(30):
            writer.submit(r)
        await wait_for(lambda: len(sink.rows) == 29)
        await asyncio.sleep(0.05)
    assert "req-000007" not in sink.rows
    assert writer.stats.rejected == 1 and writer.stats.dropped == 0
    assert b"req-000007" in SpillFile(writer.spill_path).bad_path.read_bytes()


async def test_loss_is_counted_only_when_the_spill_file_fails_too(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    sink = FakeSink()
    writer = UsageWriter(sink, blocker / "spill.jsonl", max_queue=5, **FAST)
    for r in records(8):
        writer.submit(r)  # never raises
    writer.submit("not a record")  # type: ignore[arg-type]
    assert writer.stats.queue_depth == 5 and writer.stats.dropped == 4
    await writer.close()
    assert len(sink.rows) == 5


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    bad: list[Callable[[], object]] = [
        lambda: UsageWriter(FakeSink(), tmp_path / "s", max_queue=0),
        lambda: UsageWriter(FakeSink(), tmp_path / "s", flush_interval=0),
    ]
    for make in bad:
        with pytest.raises(ValueError, match="UsageWriter"):
            make()


async def test_run_twice_is_refused(tmp_path: Path) -> None:
    writer = UsageWriter(FakeSink(), tmp_path / "spill.jsonl", **FAST)
    async with running(writer):
        await asyncio.sleep(0.02)
        with pytest.raises(RuntimeError, match="already running"):
            await writer.run()
