"""A million usage rows on each backend: the grouped, filtered queries read through an index.

Each query ``UsageQuery.summary`` sends is captured as it goes to the database and explained
there (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN (FORMAT JSON)) on the loaded table, with
its statistics: the plan must reach the usage rows through an index, never by scanning the
whole table. Durations are printed for information only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.security.crypto import Crypto
from corral.store import open_store
from corral.usage import UsageFilter, UsageQuery, UsageRecord
from tests.usage import bulk

ROWS = 1_000_000

QUERIES = [
    (UsageFilter(since=bulk.END - timedelta(hours=24), provider="cloud"), ("model",)),
    (UsageFilter(since=bulk.END - timedelta(days=7)), ("day",)),
    (UsageFilter(since=bulk.END - timedelta(days=7), model="model-3"), ("provider", "user")),
    (UsageFilter(key_id="k001"), ("hour",)),
    (UsageFilter(user="user-17", since=bulk.END - timedelta(days=14)), ("model",)),
]


class Captured:
    """The statements an engine sends, with their parameters, as the driver gets them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[tuple[str, Any]] = []
        self._engine = engine.sync_engine

    def __enter__(self) -> Captured:
        event.listen(self._engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        self.statements.append((statement, parameters))


async def plan(engine: AsyncEngine, statement: str, parameters: Any) -> list[str]:
    """How the database would run ``statement``: one line per step that reads a table."""
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)).all()
            return [str(row[-1]) for row in rows]
        [(raw,)] = (await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)).all()
    tree = json.loads(raw) if isinstance(raw, str) else raw
    return [
        " ".join(
            [node["Node Type"]]
            + ([f"using {node['Index Name']}"] if "Index Name" in node else [])
            + ([f"on {node['Relation Name']}"] if "Relation Name" in node else [])
        )
        for node in _nodes(tree[0]["Plan"])
        if "Relation Name" in node or "Index Name" in node
    ]


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)


def full_scans(steps: list[str]) -> list[str]:
    """The steps that read the whole usage table."""
    return [
        s
        for s in steps
        if (s.startswith("SCAN usage") and "INDEX" not in s) or s.startswith("Seq Scan on usage")
    ]


async def test_grouped_queries_on_a_million_rows_use_an_index(database_url: str, crypto: Crypto) -> None:
    store = await open_store(database_url, crypto=crypto)
    try:
        if store.dialect == "sqlite":
            bulk.load_sqlite(database_url, ROWS)
        else:
            await bulk.load_postgres(database_url, ROWS)
        query = UsageQuery(store.engine, rollup=False)  # the rows' indexes (the rollup: test_rollup.py)
        [total] = await query.summary()
        assert total.requests == ROWS
        timings = []
        for where, group_by in QUERIES:
            started = time.perf_counter()
            with Captured(store.engine) as captured:
                found = await query.summary(where, group_by)
            timings.append(time.perf_counter() - started)
            assert found and sum(s.requests for s in found) > 0
            [(statement, parameters)] = [(q, p) for q, p in captured.statements if q.startswith("SELECT")]
            steps = await plan(store.engine, statement, parameters)
            print(f"\n{store.dialect} {where} by {group_by}: {steps}")
            assert steps and not full_scans(steps), (where, steps)
            assert any("INDEX" in s.upper() for s in steps), (where, steps)
        print(f"{store.dialect}: {', '.join(f'{t * 1000:.0f} ms' for t in timings)} (not asserted)")
    finally:
        await store.close()


def test_bulk_rows_are_valid_records() -> None:
    for row in bulk.rows(5):
        UsageRecord.from_row(dict(zip(bulk.COLUMNS, row, strict=True)))
