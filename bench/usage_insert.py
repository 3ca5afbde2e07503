"""How fast the usage sink writes while the event loop is busy, by rows per SQLite statement.

The gateway's event loop is never idle under load, and aiosqlite runs the driver in a thread
that must win the GIL back from the loop around every statement. This starts a loop that
keeps busy (small CPU-bound steps, yielding between them, like request handling), writes
``--rows`` usage records through ``StoreSink`` in batches of 500, and prints the wall time and
rows per second for one row per statement (the old way) and for the sink's default.

    python bench/usage_insert.py [--rows 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from corral.security.crypto import Crypto, generate_key
from corral.store import open_store
from corral.usage import StoreSink, UsageRecord
from corral.usage.sink import SQLITE_ROWS_PER_STATEMENT


def batch(start: int, n: int) -> list[UsageRecord]:
    now = datetime.now(UTC)
    return [
        UsageRecord(
            request_id=f"req_{start + i:020d}",
            at=now,
            requested_model="mock-ollama/llama3.2",
            key_id="k1",
            user="alice",
            served_model="llama3.2",
            provider="mock-ollama",
            instance="mock-ollama",
            streamed=True,
            prompt_tokens=10,
            completion_tokens=20,
            total_tokens=30,
            latency_ms=0.5,
            ttft_ms=0.3,
            upstream_ms=0.2,
            overhead_ms=0.3,
        )
        for i in range(n)
    ]


async def busy(stop: asyncio.Event) -> int:
    steps = 0
    while not stop.is_set():
        sum(range(300))  # ~5 us of work, then yield, like a handler step
        steps += 1
        await asyncio.sleep(0)
    return steps


async def measure(rows_per_statement: int, total: int) -> tuple[float, int]:
    home = Path(tempfile.mkdtemp(prefix="corral-usage-bench-"))
    store = await open_store(f"sqlite+aiosqlite:///{home / 'corral.db'}", crypto=Crypto([generate_key()]))
    try:
        sink = StoreSink(store.engine, rows_per_statement=rows_per_statement)
        batches = [batch(i, 500) for i in range(0, total, 500)]
        stop = asyncio.Event()
        loop_task = asyncio.create_task(busy(stop))
        started = time.perf_counter()
        for records in batches:
            await sink.write(records)
        wall = time.perf_counter() - started
        stop.set()
        return wall, await loop_task
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    default = SQLITE_ROWS_PER_STATEMENT
    print("| rows per statement | wall s | rows/s | loop steps done meanwhile |\n|---|---|---|---|")
    for rows_per_statement in (1, default, 1, default):
        wall, steps = await measure(rows_per_statement, args.rows)
        print(f"| {rows_per_statement} | {wall:.2f} | {args.rows / wall:,.0f} | {steps:,} |")


if __name__ == "__main__":
    uvloop.run(main())
