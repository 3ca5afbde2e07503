"""UsageQuery on SQLite and PostgreSQL: filters, every group_by, totals and p50/p95 against Python."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral.errors import InvalidRequest
from corral.store import Store
from corral.usage import StoreSink, UsageFilter, UsageQuery, UsageRecord, parse_group_by
from corral.usage.query import DIMENSIONS, parse_last
from corral.usage.record import SURFACES
from tests.usage.factory import T0, record

PROVIDERS = ["local", "cloud", None]
MODELS = [("llama3", "llama3"), ("fast", "qwen2.5"), ("gpt-4o", "gpt-4o"), ("missing", None)]


def dataset() -> list[UsageRecord]:
    """60 varied records over two days; latencies are distinct and unordered."""
    found = []
    for i in range(60):
        requested, served = MODELS[i % 4]
        provider = PROVIDERS[i % 3] if served else None
        found.append(
            record(
                i,
                at=T0 + timedelta(minutes=47 * i),
                requested_model=requested,
                served_model=served,
                provider=provider,
                instance=None if provider is None else f"{provider}-{i % 2}",
                key_id=None if i % 11 == 0 else f"k{i % 3}",
                user=None if i % 5 == 0 else f"user{i % 4}",
                status=502 if served is None else (429 if i % 13 == 0 else 200),
                error_class=None if served else "UpstreamUnavailable",
                prompt_tokens=10 * i,
                completion_tokens=i % 7,
                total_tokens=10 * i + i % 7,
                tokens_estimated=i % 6 == 0,
                cost_usd=0.0 if provider == "local" else i / 1000,
                latency_ms=float((i * 37) % 101) + i / 100,
                surface=None if i % 7 == 0 else SURFACES[i % len(SURFACES)],
            )
        )
    return found


def key_of(r: UsageRecord, name: str) -> str | None:
    return {
        "provider": lambda: r.provider,
        "model": lambda: r.served_model or r.requested_model,
        "requested_model": lambda: r.requested_model,
        "key": lambda: r.key_id,
        "user": lambda: r.user,
        "instance": lambda: r.instance,
        "surface": lambda: r.surface,
        "hour": lambda: r.at.strftime("%Y-%m-%dT%H:00:00Z"),
        "day": lambda: r.at.strftime("%Y-%m-%d"),
    }[name]()


def quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94]


def expected(items: list[UsageRecord], group_by: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[UsageRecord]] = {}
    for r in items:
        groups.setdefault(tuple(key_of(r, g) for g in group_by), []).append(r)
    return {
        key: {
            "requests": len(rs),
            "prompt_tokens": sum(r.prompt_tokens for r in rs),
            "completion_tokens": sum(r.completion_tokens for r in rs),
            "total_tokens": sum(r.total_tokens for r in rs),
            "cost_usd": pytest.approx(sum(r.cost_usd for r in rs)),
            "errors": sum(r.failed for r in rs),
            "estimated": sum(r.tokens_estimated for r in rs),
            "latency_p50_ms": pytest.approx(quantiles([r.latency_ms for r in rs])[0]),
            "latency_p95_ms": pytest.approx(quantiles([r.latency_ms for r in rs])[1]),
        }
        for key, rs in groups.items()
    }


def actual(summaries: list[Any], group_by: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    found = {}
    for s in summaries:
        view = s.view()
        assert tuple(name for name, _ in s.group) == group_by
        found[tuple(view.pop(g) for g in group_by)] = view
    return found


@pytest.fixture
async def loaded(store: Store) -> UsageQuery:
    await StoreSink(store.engine).write(dataset())
    return UsageQuery(store.engine, rollup=False)  # the rows; tests/usage/test_rollup.py: the rollup


GROUPINGS = [(), *((d,) for d in DIMENSIONS), ("provider", "model"), ("day", "key", "user")]


@pytest.mark.parametrize("group_by", GROUPINGS, ids=lambda g: "+".join(g) or "none")
async def test_every_group_by_matches_python(loaded: UsageQuery, group_by: tuple[str, ...]) -> None:
    assert actual(await loaded.summary(None, group_by), group_by) == expected(dataset(), group_by)


FILTERS: list[tuple[UsageFilter, Callable[[UsageRecord], bool]]] = [
    (UsageFilter(key_id="k1"), lambda r: r.key_id == "k1"),
    (UsageFilter(user="user2"), lambda r: r.user == "user2"),
    (UsageFilter(provider="cloud"), lambda r: r.provider == "cloud"),
    (UsageFilter(surface="ollama"), lambda r: r.surface == "ollama"),
    (UsageFilter(model="qwen2.5"), lambda r: r.served_model == "qwen2.5"),  # the served name
    (UsageFilter(model="fast"), lambda r: r.requested_model == "fast"),  # or the requested one
    (
        UsageFilter(since=T0 + timedelta(hours=10), until=T0 + timedelta(hours=30)),
        lambda r: T0 + timedelta(hours=10) <= r.at < T0 + timedelta(hours=30),
    ),
    (
        UsageFilter(since=T0 + timedelta(hours=20), provider="local", key_id="k0"),
        lambda r: r.at >= T0 + timedelta(hours=20) and r.provider == "local" and r.key_id == "k0",
    ),
]


@pytest.mark.parametrize(("where", "keep"), FILTERS)
@pytest.mark.parametrize("group_by", [("model",), ("hour",)])
async def test_filters_match_python(
    loaded: UsageQuery, where: UsageFilter, keep: Callable[[UsageRecord], bool], group_by: tuple[str, ...]
) -> None:
    kept = [r for r in dataset() if keep(r)]
    assert kept, "the filter should keep something"
    assert actual(await loaded.summary(where, group_by), group_by) == expected(kept, group_by)


async def test_no_match_gives_zero_totals_or_no_groups(loaded: UsageQuery) -> None:
    where = UsageFilter(user="nobody")
    [total] = await loaded.summary(where)
    assert (total.requests, total.cost_usd, total.latency_p50_ms, total.group) == (0, 0.0, None, ())
    assert await loaded.summary(where, ("provider",)) == []


async def test_compare_is_grouped_by_provider(loaded: UsageQuery) -> None:
    compared = await loaded.compare(UsageFilter(since=T0))
    assert [dict(s.group)["provider"] for s in compared] == ["cloud", "local", None]
    assert actual(compared, ("provider",)) == expected(dataset(), ("provider",))


async def test_last_hour(store: Store) -> None:
    now = datetime.now(UTC)
    items = [record(1, at=now - timedelta(minutes=30)), record(2, at=now - timedelta(minutes=90))]
    items.append(record(3, at=now - timedelta(seconds=5), requested_model="unpriced", cost_usd=0.0))
    await StoreSink(store.engine).write(items)
    query = UsageQuery(store.engine)
    [total] = await query.summary(UsageFilter.from_params({"last": "1h"}, now))
    assert total.requests == 2 and total.cost_usd == 0.0  # an unpriced model is still counted
    [total] = await query.summary(UsageFilter.from_params({"last": "2h"}, now))
    assert total.requests == 3


async def test_recent_is_a_live_tail(loaded: UsageQuery, store: Store) -> None:
    newest = await loaded.recent(limit=5)
    assert [e.record.request_id for e in newest] == [f"req-{i:06d}" for i in range(55, 60)]
    assert [e.id for e in newest] == sorted(e.id for e in newest)
    assert newest[-1].record == dataset()[-1]
    assert newest[0].view()["request_id"] == "req-000055" and newest[0].view()["id"] == newest[0].id
    assert await loaded.recent(after_id=newest[-1].id) == []
    await StoreSink(store.engine).write([record(100), record(101)])
    tail = await loaded.recent(limit=1, after_id=newest[-1].id)
    assert [e.record.request_id for e in tail] == ["req-000100"]
    tail = await loaded.recent(after_id=tail[-1].id, where=UsageFilter(user="alice"))
    assert [e.record.request_id for e in tail] == ["req-000101"]
    with pytest.raises(InvalidRequest, match="between 1 and 1000"):
        await loaded.recent(limit=0)


def test_filter_parameters() -> None:
    now = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)
    parsed = UsageFilter.from_params(
        {"since": "2025-01-01T00:00:00Z", "until": "2025-01-02", "key": "k1", "user": "", "model": "m"}, now
    )
    assert parsed == UsageFilter(
        since=datetime(2025, 1, 1, tzinfo=UTC), until=datetime(2025, 1, 2, tzinfo=UTC), key_id="k1", model="m"
    )
    assert UsageFilter.from_params({"last": "15m"}, now).since == now - timedelta(minutes=15)
    assert parse_last("7d") == timedelta(days=7) and parse_last(" 2w ") == timedelta(weeks=2)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"last": "1 hour"}, "'last' must be"),
        ({"last": "0h"}, "'last' must be"),
        ({"last": "1h", "since": "2025-01-01"}, "either 'last' or 'since'"),
        ({"since": "2025-01-02", "until": "2025-01-01"}, "'until' must be later"),
        ({"since": "yesterday"}, "ISO 8601"),
    ],
)
def test_bad_filter_parameters_say_what_to_send(params: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        UsageFilter.from_params(params, datetime.now(UTC))


def test_group_by_parameter() -> None:
    assert parse_group_by("provider, model") == ("provider", "model")
    assert parse_group_by(None) == () and parse_group_by("") == ()
    with pytest.raises(InvalidRequest, match="Unknown group_by 'week'"):
        parse_group_by("week")
    with pytest.raises(InvalidRequest, match="up to 3 different"):
        parse_group_by("day,day")
    with pytest.raises(InvalidRequest, match="up to 3 different"):
        parse_group_by("provider,model,key,user")
