"""Building usage records and fake sinks for the usage tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.usage import RecordsRefused, UsageRecord

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def record(i: int, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "request_id": f"req-{i:06d}",
        "at": T0 + timedelta(seconds=i),
        "requested_model": "llama3",
        "served_model": "llama3",
        "provider": "local",
        "instance": "http://ollama-1:11434",
        "key_id": "k1",
        "user": "alice",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "latency_ms": 100.0 + i,
    }
    values.update(fields)
    return UsageRecord(**values)


def records(n: int, start: int = 0) -> list[UsageRecord]:
    return [record(i) for i in range(start, start + n)]


async def submit_until(writer: Any, stop: asyncio.Event, submitted: list[str], pause_every: int) -> None:
    """Submit records one after another until ``stop``, noting their ids; yield to the loop
    between submits and sleep 1 ms every ``pause_every`` of them (a steady stream of requests)."""
    i = 0
    while not stop.is_set():
        r = record(i)
        writer.submit(r)
        submitted.append(r.request_id)
        i += 1
        await asyncio.sleep(0 if i % pause_every else 0.001)


class FakeSink:
    """An idempotent in-memory sink that can fail, refuse records, or hang on command."""

    def __init__(self) -> None:
        self.rows: dict[str, UsageRecord] = {}
        self.down = False
        self.refuse: set[str] = set()
        self.delay = 0.0
        self.gate: asyncio.Event | None = None  # when set to an unset event, writes wait on it
        self.calls = 0
        self.attempted = 0  # records handed to write(), duplicates included
        self.batch_sizes: list[int] = []

    async def write(self, records: Sequence[UsageRecord]) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise ConnectionRefusedError("fake database is down")
        if any(r.request_id in self.refuse for r in records):
            raise RecordsRefused("fake database refused a value")
        self.batch_sizes.append(len(records))
        self.attempted += len(records)
        for r in records:
            self.rows.setdefault(r.request_id, r)


async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    """Poll ``condition()`` until it is true (fails the test after ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
