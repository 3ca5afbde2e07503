"""The usage series (``UsageQuery.series``) on each database: one point per bucket and group,
figures summed within a bucket, empty buckets left out, and the range and step checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from corral.errors import InvalidRequest
from corral.store import Store
from corral.usage import StoreSink, UsageFilter, UsageQuery
from corral.usage.query import parse_step
from tests.support.databases import *  # noqa: F403
from tests.usage.factory import T0, record


@pytest.fixture
async def filled(store: Store) -> AsyncIterator[UsageQuery]:
    rows = [
        record(1, at=T0 + timedelta(seconds=5), latency_ms=100.0),
        record(2, at=T0 + timedelta(seconds=25), latency_ms=300.0, cost_usd=0.5),
        record(3, at=T0 + timedelta(seconds=55), latency_ms=200.0, provider="cloud"),
        record(
            4,
            at=T0 + timedelta(minutes=3, seconds=1),
            latency_ms=50.0,
            status=500,
            error_class="UpstreamError",
        ),
    ]
    await StoreSink(store.engine).write(rows)
    yield UsageQuery(store.engine)


async def test_one_point_per_bucket_and_group(filled: UsageQuery) -> None:
    where = UsageFilter(since=T0, until=T0 + timedelta(minutes=10))
    points = [p.view() for p in await filled.series(where, 60, ("provider",))]
    assert [(p["t"], p["provider"], p["requests"]) for p in points] == [
        ("2025-01-01T12:00:00Z", "cloud", 1),
        ("2025-01-01T12:00:00Z", "local", 2),
        ("2025-01-01T12:03:00Z", "local", 1),
    ]
    first = points[1]
    assert first["cost_usd"] == 0.5 and first["latency_p50_ms"] == 200.0 and first["total_tokens"] == 30
    assert points[2]["errors"] == 1


async def test_without_a_group_every_bucket_sums_all(filled: UsageQuery) -> None:
    points = await filled.series(UsageFilter(since=T0), 300, ())
    assert [(p.view()["t"], p.summary.requests) for p in points] == [("2025-01-01T12:00:00Z", 4)]


async def test_a_series_needs_a_range_and_buckets_by_step_not_by_hour(filled: UsageQuery) -> None:
    with pytest.raises(InvalidRequest):
        await filled.series(UsageFilter(), 60, ())
    with pytest.raises(InvalidRequest):
        await filled.series(UsageFilter(since=T0), 60, ("hour",))


def test_the_step_is_bounded_and_has_a_sensible_default() -> None:
    assert parse_step(None, timedelta(hours=1)) == 60
    assert parse_step(None, timedelta(days=7)) == 3 * 3600
    assert parse_step("5m", timedelta(hours=1)) == 300
    for bad in ("0m", "soon", "1s"):
        with pytest.raises(InvalidRequest):
            parse_step(bad, timedelta(days=30))
