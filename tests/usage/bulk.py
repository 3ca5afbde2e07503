"""Fast bulk loading of synthetic usage rows for the timing tests (sqlite3 executemany / COPY)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex

from corral.store.tables import usage
from tests.support.databases import connect

END = datetime(2025, 3, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
PROVIDERS = ["local-a", "local-b", "cloud", "openai"]
MODELS = [f"model-{i}" for i in range(12)]
COLUMNS = [
    "request_id", "at", "key_id", "user", "requested_model", "served_model", "provider", "instance",
    "attempts", "fallback", "streamed", "status", "error_class", "prompt_tokens", "completion_tokens",
    "total_tokens", "tokens_estimated", "cost_usd", "latency_ms", "ttft_ms", "upstream_ms", "overhead_ms",
    "surface",
]  # fmt: skip
SURFACES = ["openai_chat", "ollama", "anthropic_messages", "openai_responses"]


def rows(count: int, *, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """``count`` rows spread evenly over the 30 days before END (newest last)."""
    rng = random.Random(seed)
    step = SPAN / count
    start = END - SPAN
    for i in range(count):
        model = MODELS[rng.randrange(len(MODELS))]
        prompt, completion = rng.randrange(10, 2000), rng.randrange(1, 800)
        latency = rng.uniform(20, 5000)
        failed = rng.random() < 0.03
        yield (
            f"bulk-{i:08d}", start + step * i, f"k{rng.randrange(50):03d}", f"user-{rng.randrange(200)}",
            model, model, PROVIDERS[rng.randrange(len(PROVIDERS))], "i1", 1, False, i % 2 == 0,
            500 if failed else 200, "UpstreamError" if failed else None, prompt, completion,
            prompt + completion, False, 0.0, latency, latency / 4, latency * 0.9, latency * 0.1,
            SURFACES[i % len(SURFACES)],
        )  # fmt: skip


def _index_ddl(dialect: Any) -> list[tuple[str, str]]:
    """(name, CREATE INDEX statement) of every index of the usage table, from tables.py."""
    return [(index.name or "", str(CreateIndex(index).compile(dialect=dialect))) for index in usage.indexes]


def load_sqlite(url: str, count: int) -> None:
    """Drop the indexes, insert, build the indexes again (sorted builds are much faster).
    The rollup is not built: call ``corral.usage.rollup.backfill`` for that."""
    from sqlalchemy.dialects import sqlite

    path = make_url(url).database
    assert path
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        indexes = _index_ddl(sqlite.dialect())
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        placeholders = ", ".join("?" for _ in COLUMNS)
        names = ", ".join(f'"{c}"' for c in COLUMNS)
        sql = f"INSERT INTO usage ({names}) VALUES ({placeholders})"
        conn.executemany(
            sql,
            (
                (*r[:1], r[1].replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f"), *r[2:])
                for r in rows(count)
            ),
        )
        for _, ddl in indexes:
            conn.execute(ddl)
        conn.commit()
        conn.execute("ANALYZE")
    finally:
        conn.close()


async def load_postgres(url: str, count: int) -> None:
    from sqlalchemy.dialects import postgresql

    conn = await connect(url)
    try:
        indexes = _index_ddl(postgresql.dialect())
        for name, _ in indexes:
            await conn.execute(f'DROP INDEX "{name}"')
        await conn.copy_records_to_table("usage", records=rows(count), columns=COLUMNS)
        for _, ddl in indexes:
            await conn.execute(ddl)
        await conn.execute("ANALYZE usage")
    finally:
        await conn.close()
