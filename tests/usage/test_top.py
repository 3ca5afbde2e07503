"""The top groups and "other" on SQLite and PostgreSQL, from the rows and from the rollup: the
kept groups are the first by cost (or requests) with ties broken by name, and the kept groups
plus "other" add up exactly to the ungrouped totals (counts, tokens and cost), per bucket too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral.errors import InvalidRequest
from corral.store import Store
from corral.usage import StoreSink, UsageFilter, UsageQuery, UsageRecord
from corral.usage.figures import percentile
from corral.usage.params import MAX_TOP, Top, parse_top
from corral.usage.query import UsageSummary
from tests.usage.factory import record

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(hours=30)
# cost per request of each user (in 64ths of a dollar, so every order of summing is exact); None
# is the requests without a user; u00-u02, u03-u04, u05-u07 and u08-u10 tie
COSTS: dict[str | None, int] = {
    **{f"u{i:02d}": c for i, c in enumerate((3, 3, 3, 2, 2, 1, 1, 1, 0, 0, 0, 5))},
    None: 4,
}
USERS = list(COSTS)


def dataset() -> list[UsageRecord]:
    """Ten requests per user, five more for u09, over the last 30 hours."""
    users = [USERS[i % len(USERS)] for i in range(10 * len(USERS))] + ["u09"] * 5
    return [
        record(
            i,
            at=START + timedelta(minutes=13 * i),
            user=user,
            key_id=f"k{i % 3}",
            status=500 if i % 9 == 0 else 200,
            prompt_tokens=10 + i,
            completion_tokens=i % 7,
            total_tokens=10 + i + i % 7,
            tokens_estimated=i % 6 == 0,
            cost_usd=COSTS[user] / 64,
            latency_ms=float((i * 37) % 101) + i / 100,
        )
        for i, user in enumerate(users)
    ]


@pytest.fixture
async def loaded(store: Store) -> Store:
    await StoreSink(store.engine).write(dataset())
    return store


FIGURES = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "errors",
    "estimated",
)


def figures(rows: Sequence[UsageSummary]) -> tuple[Any, ...]:
    return tuple(sum(getattr(r, name) for r in rows) for name in FIGURES)


BY_COST = ["u11", None, "u00", "u01"]  # 5, 4, then three tied at 3: by name
BY_REQUESTS = ["u09", "u11", None, "u00"]  # u09 has 15 requests, the rest 10 each: then by cost


@pytest.mark.parametrize("rollup", [True, False])
@pytest.mark.parametrize(("by", "first"), [("cost", BY_COST), ("requests", BY_REQUESTS)])
async def test_the_top_groups_and_other_add_up_to_the_totals(
    loaded: Store, rollup: bool, by: str, first: list[str | None]
) -> None:
    query = UsageQuery(loaded.engine, rollup=rollup)
    for where in (UsageFilter(), UsageFilter(since=START - timedelta(minutes=5))):
        rows = await query.summary(where, ("user",), Top(4, by))
        assert [r.group for r in rows] == [
            (("user", u),) for u in sorted(first, key=lambda u: (u is None, u or ""))
        ] + [(("user", None),)]
        *kept, other = rows
        assert [r.other for r in kept] == [0, 0, 0, 0] and other.other == len(USERS) - 4
        assert figures(rows) == figures(await query.summary(where))
        folded = [r for r in dataset() if r.user not in first]
        assert other.requests == len(folded)
        assert other.cost_usd == sum(r.cost_usd for r in folded)
        if not rollup:  # exact percentiles of the folded requests themselves
            latencies = sorted(r.latency_ms for r in folded)
            assert other.latency_p50_ms == pytest.approx(percentile(latencies, 0.5))
            assert other.latency_p95_ms == pytest.approx(percentile(latencies, 0.95))
        assert other.view()["other"] == len(USERS) - 4 and "other" not in kept[0].view()


@pytest.mark.parametrize("rollup", [True, False])
async def test_a_series_keeps_the_same_groups_in_every_bucket_and_adds_up_per_bucket(
    loaded: Store, rollup: bool
) -> None:
    query = UsageQuery(loaded.engine, rollup=rollup)
    where = UsageFilter(since=START - timedelta(minutes=5))
    for step in (3600, 3 * 3600, 600):
        points = await query.series(where, step, ("user",), Top(4))
        assert {p.summary.group[0][1] for p in points if not p.summary.other} <= set(BY_COST)
        assert {p.summary.other for p in points} == {0, len(USERS) - 4}
        whole = {p.start: p.summary for p in await query.series(where, step)}
        assert sorted({p.start for p in points}) == sorted(whole)
        for start, total in whole.items():
            bucket = [p.summary for p in points if p.start == start]
            assert figures(bucket) == figures([total]), (step, start)
            others = [s for s in bucket if s.other]
            assert len(others) <= 1 and bucket[-len(others) or len(bucket) :] == others  # "other" last


async def test_ties_fall_the_same_way_from_the_rows_and_the_rollup(loaded: Store) -> None:
    where = UsageFilter(since=START - timedelta(minutes=5))
    for n in range(1, len(USERS)):
        for by in ("cost", "requests"):
            answers = [
                [
                    (r.group, r.requests, r.cost_usd, r.other)
                    for r in await UsageQuery(loaded.engine, rollup=rollup).summary(
                        where, ("user",), Top(n, by)
                    )
                ]
                for rollup in (True, False)
            ]
            assert answers[0] == answers[1], (n, by)
            again = await UsageQuery(loaded.engine).summary(where, ("user",), Top(n, by))
            assert [(r.group, r.requests, r.cost_usd, r.other) for r in again] == answers[0]


@pytest.mark.parametrize("rollup", [True, False])
async def test_top_with_a_time_dimension_folds_per_day(loaded: Store, rollup: bool) -> None:
    query = UsageQuery(loaded.engine, rollup=rollup)
    rows = await query.summary(UsageFilter(), ("day", "user"), Top(2))
    days = await query.summary(UsageFilter(), ("day",))
    assert len(days) >= 2
    for day in days:
        of_day = [r for r in rows if r.group[0] == day.group[0]]
        assert figures(of_day) == figures([day])
        assert {r.group[1][1] for r in of_day if not r.other} <= {"u11", None}
        assert not of_day[-1].other or of_day[-1].group[1] == ("user", None)


async def test_no_more_groups_than_top_folds_nothing(loaded: Store) -> None:
    rows = await UsageQuery(loaded.engine).summary(UsageFilter(), ("user",), Top(len(USERS)))
    assert len(rows) == len(USERS) and not any(r.other for r in rows)


def test_top_is_checked() -> None:
    assert parse_top({}, ("user",), default=10) == Top(10, "cost")
    assert parse_top({}, ("provider", "model"), default=10) is None
    assert parse_top({}, ("user",), default=None) is None
    assert parse_top({"top": " 3 ", "top_by": "requests"}, ("day", "user"), default=None) == Top(
        3, "requests"
    )
    for params, group_by in [
        ({"top": "0"}, ("user",)),
        ({"top": str(MAX_TOP + 1)}, ("user",)),
        ({"top": "3.5"}, ("user",)),
        ({"top": "²"}, ("user",)),
        ({"top": "3"}, ()),
        ({"top": "3"}, ("provider", "model")),
        ({"top_by": "latency"}, ("user",)),
    ]:
        with pytest.raises(InvalidRequest):
            parse_top(params, group_by, default=None)
