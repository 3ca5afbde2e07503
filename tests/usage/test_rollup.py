"""The usage rollup on SQLite and PostgreSQL: its figures equal the rows' (counts, tokens and cost
exactly, percentiles within a bucket), the writer keeps it in step (replays counted once), the
backfill builds the same table, and a range is covered by whole pieces."""

from __future__ import annotations

import itertools
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from corral.store import Store
from corral.store.tables import usage_rollup
from corral.usage import StoreSink, UsageFilter, UsageQuery, UsageRecord
from corral.usage.query import ROLLUP_AFTER, UsageSummary
from corral.usage.rollup import backfill, bucket_range, latency_bucket, prune_before, prune_statement
from corral.usage.rollup_read import pieces
from tests.usage.test_query import FILTERS, GROUPINGS, dataset

NOW = datetime.now(UTC).replace(microsecond=0)


def recent() -> list[UsageRecord]:
    """The varied dataset moved to end a few minutes ago, so minute rows are read too; costs are
    multiples of 1/1024 so every order of summing gives the same float."""
    shift = NOW - timedelta(minutes=3) - max(r.at for r in dataset())
    out = []
    for r in dataset():
        values = {name: getattr(r, name) for name in r.__dataclass_fields__}
        values.update(at=r.at + shift, cost_usd=round(r.cost_usd * 1024) / 1024)
        out.append(UsageRecord(**values))
    return out


def check_percentile(estimate: float | None, latencies: list[float], p: float) -> None:
    assert latencies, "a group without requests"
    ranked = sorted(latencies)
    low = ranked[int((len(ranked) - 1) * p)]
    start, end = bucket_range(latency_bucket(low))
    # the estimate is rounded to a microsecond
    assert estimate is not None and start - 1e-3 <= estimate <= end + 1e-3, (estimate, low, start, end)


def same(rolled: list[UsageSummary], rows: list[UsageSummary], items: list[UsageRecord], where: Any) -> None:
    assert [s.group for s in rolled] == [s.group for s in rows]
    for a, b in zip(rolled, rows, strict=True):
        assert (a.requests, a.prompt_tokens, a.completion_tokens, a.total_tokens, a.errors, a.estimated) == (
            b.requests, b.prompt_tokens, b.completion_tokens, b.total_tokens, b.errors, b.estimated,
        )  # fmt: skip
        assert a.cost_usd == b.cost_usd
        members = [r for r in items if where(r, dict(a.group))]
        assert len(members) == a.requests
        for p, value in ((0.5, a.latency_p50_ms), (0.95, a.latency_p95_ms)):
            check_percentile(value, [r.latency_ms for r in members], p)


def member(group_by: tuple[str, ...]) -> Any:
    def where(r: UsageRecord, group: dict[str, Any]) -> bool:
        from tests.usage.test_query import key_of

        return all(key_of(r, name) == group[name] for name in group_by)

    return where


@pytest.fixture
async def loaded(store: Store) -> Store:
    await StoreSink(store.engine).write(recent())
    return store


ELIGIBLE = [g for g in GROUPINGS if len([d for d in g if d not in ("hour", "day")]) <= 1]


@pytest.mark.parametrize("last", [None, timedelta(hours=5), timedelta(hours=30, minutes=7, seconds=13)])
async def test_summaries_from_the_rollup_equal_the_rows(loaded: Store, last: timedelta | None) -> None:
    where = UsageFilter(since=None if last is None else NOW - last)
    assert last is None or last > ROLLUP_AFTER
    items = [r for r in recent() if where.since is None or r.at >= where.since]
    for group_by in ELIGIBLE:
        rolled = await UsageQuery(loaded.engine).summary(where, group_by)
        rows = await UsageQuery(loaded.engine, rollup=False).summary(where, group_by)
        assert rows, "the window holds requests"
        same(rolled, rows, items, member(group_by))


async def test_filtered_summaries_from_the_rollup_equal_the_rows(loaded: Store) -> None:
    shift = NOW - timedelta(minutes=3) - max(r.at for r in dataset())
    for base, _ in FILTERS:
        since = None if base.since is None else base.since + shift
        until = None if base.until is None else base.until + shift
        where = UsageFilter(since, until, base.key_id, base.user, base.model, base.provider, base.surface)
        rolled = await UsageQuery(loaded.engine).summary(where)
        rows = await UsageQuery(loaded.engine, rollup=False).summary(where)
        assert [(s.requests, s.total_tokens, s.cost_usd, s.errors) for s in rolled] == [
            (s.requests, s.total_tokens, s.cost_usd, s.errors) for s in rows
        ], where


def _order(point: Any) -> tuple[Any, ...]:
    return (point.start, [(v is None, v or "") for _, v in point.summary.group])


async def test_series_from_the_rollup_equal_the_rows(loaded: Store) -> None:
    where = UsageFilter(since=NOW - timedelta(hours=44, minutes=13, seconds=5))
    for step in (60, 600, 1800, 3600, 10800):
        for group_by in [(), ("provider",), ("user",), ("surface",)]:
            rolled = sorted(await UsageQuery(loaded.engine).series(where, step, group_by), key=_order)
            rows = sorted(
                await UsageQuery(loaded.engine, rollup=False).series(where, step, group_by), key=_order
            )
            assert [(p.start, p.summary.group) for p in rolled] == [(p.start, p.summary.group) for p in rows]
            for a, b in zip(rolled, rows, strict=True):
                assert (a.summary.requests, a.summary.total_tokens, a.summary.errors) == (
                    b.summary.requests, b.summary.total_tokens, b.summary.errors,
                )  # fmt: skip
                assert a.summary.cost_usd == b.summary.cost_usd
                assert a.ttft_avg_ms == b.ttft_avg_ms


async def rollup_rows(store: Store) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(usage_rollup))).all()
    return {tuple(r[:4]): tuple(r[4:]) for r in rows}


async def test_the_writer_counts_a_replayed_batch_once(store: Store) -> None:
    sink = StoreSink(store.engine)
    items = recent()
    await sink.write(items[:40])
    once = await rollup_rows(store)
    await sink.write(items[:40])  # a replay of the same records: nothing new
    assert await rollup_rows(store) == once
    await sink.write(items[30:] + items[30:35])  # partly stored, partly new, one repeated in the batch
    total = (await rollup_rows(store))[(86400, "", NOW.timestamp() // 86400 * 86400, "")]
    day_requests = sum(v[0] for k, v in (await rollup_rows(store)).items() if k[0] == 86400 and k[1] == "")
    assert day_requests == len(items)
    assert total[0] <= len(items)


async def test_the_backfill_builds_what_the_writer_built(store: Store) -> None:
    await StoreSink(store.engine).write(recent())
    written = await rollup_rows(store)
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql("DELETE FROM usage_rollup")
        await conn.run_sync(backfill)
    rebuilt = await rollup_rows(store)
    assert rebuilt.keys() == written.keys()
    for key, values in written.items():
        assert rebuilt[key][:6] == values[:6] and rebuilt[key][9:] == values[9:], key
        assert math.isclose(rebuilt[key][6], values[6], abs_tol=1e-12)  # cost: float sums in any order


async def test_old_minute_rows_are_pruned_and_not_read(store: Store) -> None:
    old = [r for r in recent()][:5]
    await StoreSink(store.engine).write(old)
    cutoff = prune_before(time.time() + 3 * 86400)  # as if three days had passed
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(prune_statement(store.engine.dialect.name), (cutoff,))
    left = await rollup_rows(store)
    assert not [k for k in left if k[0] == 60]
    assert [k for k in left if k[0] == 3600]


@pytest.mark.parametrize("max_grain", [60, 3600, 86400])
def test_pieces_cover_the_range_with_aligned_rollup_rows(max_grain: int) -> None:
    now = 1_760_000_000
    for since, until in [(now - 30 * 86400 + 7, now + 3), (now - 3 * 3600 - 1, now), (now - 59, now)]:
        parts = pieces(since, until, max_grain, now)
        assert parts[0][1] == since and parts[-1][2] == until
        for (_, _, end), (_, start, _) in itertools.pairwise(parts):
            assert end == start
        for grain, start, end in parts:
            assert start is not None and start < end
            if grain:
                assert grain <= max_grain and start % grain == 0 and end % grain == 0
                assert grain != 60 or start >= now - 47 * 3600
    assert pieces(None, now, 86400, now)[0] == (86400, None, now // 86400 * 86400)
