"""How fast the usage sink writes while the event loop is busy, by rows per SQLite statement.

The gateway's event loop is never idle under load, and aiosqlite runs the driver in a thread
that must win the GIL back from the loop around every statement. This starts a loop that
keeps busy (small CPU-bound steps, yielding between them, like request handling), writes
``--rows`` usage records through ``StoreSink`` in batches of 500, and prints the wall time and
rows per second for one row per statement (the old way) and for the sink's default.

    python bench/usage_insert.py [--rows 10000]

It then prints the CPU time per record (this process and aiosqlite's thread, ``process_time``)
of ``StoreSink.write`` with and without keeping the usage rollup, for records that share one
key, user and model (a busy gateway's batch) and for records spread over 50 keys, 200 users
and 12 models (the console benchmark's data).
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


def batch(start: int, n: int, varied: bool = False) -> list[UsageRecord]:
    now = datetime.now(UTC)
    return [
        UsageRecord(
            request_id=f"req_{start + i:020d}",
            at=now,
            requested_model=f"model-{(start + i) % 12}" if varied else "mock-ollama/llama3.2",
            key_id=f"k{(start + i) % 50:03d}" if varied else "k1",
            user=f"user-{(start + i) % 200}" if varied else "alice",
            surface="openai_chat",
            served_model="llama3.2",
            provider="mock-ollama",
            instance="mock-ollama",
            streamed=True,
            prompt_tokens=10,
            completion_tokens=20,
            total_tokens=30,
            latency_ms=0.5 + (start + i) % 97,
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


async def cpu_per_record(rollup: bool, varied: bool, total: int) -> float:
    """CPU µs per record written, in batches of 500 on an idle loop."""
    home = Path(tempfile.mkdtemp(prefix="corral-usage-bench-"))
    store = await open_store(f"sqlite+aiosqlite:///{home / 'corral.db'}", crypto=Crypto([generate_key()]))
    try:
        sink = StoreSink(store.engine, keep_rollup=rollup)
        batches = [batch(i, 500, varied) for i in range(0, total, 500)]
        await sink.write(batch(10**9, 500, varied))  # warm: statements prepared, first prune done
        started = time.process_time()
        for records in batches:
            await sink.write(records)
        return (time.process_time() - started) / total * 1e6
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
    print("\n| records | CPU µs/record, no rollup | with the rollup | added |\n|---|---|---|---|")
    for varied, name in ((False, "one key, user and model"), (True, "50 keys, 200 users, 12 models")):
        off = min([await cpu_per_record(False, varied, args.rows) for _ in range(2)])
        on = min([await cpu_per_record(True, varied, args.rows) for _ in range(2)])
        print(f"| {name} | {off:.1f} | {on:.1f} | {on - off:.1f} |")


if __name__ == "__main__":
    uvloop.run(main())
