"""A million usage rows on each backend: grouped, filtered queries answer in under a second."""

from __future__ import annotations

import time
from datetime import timedelta

from corral.security.crypto import Crypto
from corral.store import open_store
from corral.usage import UsageFilter, UsageQuery, UsageRecord
from tests.usage import bulk

ROWS = 1_000_000
LIMIT = 1.0  # seconds

QUERIES = [
    (UsageFilter(since=bulk.END - timedelta(hours=24), provider="cloud"), ("model",)),
    (UsageFilter(since=bulk.END - timedelta(days=7)), ("day",)),
    (UsageFilter(since=bulk.END - timedelta(days=7), model="model-3"), ("provider", "user")),
    (UsageFilter(key_id="k001"), ("hour",)),
    (UsageFilter(user="user-17", since=bulk.END - timedelta(days=14)), ("model",)),
]


async def test_grouped_queries_on_a_million_rows(database_url: str, crypto: Crypto) -> None:
    store = await open_store(database_url, crypto=crypto)
    try:
        if store.dialect == "sqlite":
            bulk.load_sqlite(database_url, ROWS)
        else:
            await bulk.load_postgres(database_url, ROWS)
        query = UsageQuery(store.engine)
        [total] = await query.summary()
        assert total.requests == ROWS
        timings = []
        for where, group_by in QUERIES:
            started = time.perf_counter()
            found = await query.summary(where, group_by)
            timings.append(time.perf_counter() - started)
            assert found and sum(s.requests for s in found) > 0
        print(f"{store.dialect}: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}")
        assert max(timings) < LIMIT, timings
    finally:
        await store.close()


def test_bulk_rows_are_valid_records() -> None:
    for row in bulk.rows(5):
        UsageRecord.from_row(dict(zip(bulk.COLUMNS, row, strict=True)))
