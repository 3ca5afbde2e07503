"""Limits parsing, budget periods, the sliding-minute arithmetic and the 429 error."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from corral.errors import CorralError, InvalidRequest
from corral.limits import NO_LIMITS, Limits, RateLimited, parse_period
from corral.limits.windows import minute_of, over, wait_time


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_from_mapping_reads_litellm_names() -> None:
    limits = Limits.from_mapping(
        MappingProxyType(
            {"rpm": 60, "tpm": 1000.0, "max_parallel": 2, "max_budget": 5, "budget_period": "7d"}
        )
    )
    assert limits == Limits(rpm=60, tpm=1000, max_parallel=2, max_budget=5.0, budget_period="7d")
    assert isinstance(limits.tpm, int) and isinstance(limits.max_budget, float)
    assert limits.period is not None and limits.period.seconds == 7 * 86400
    assert not limits.empty


def test_empty_and_partial_limits() -> None:
    assert Limits.from_mapping({}) is NO_LIMITS and NO_LIMITS.empty
    assert Limits.from_mapping({"rpm": None, "owner_note": "ignored"}).empty
    only_rpm = Limits.from_mapping({"rpm": 3})
    assert only_rpm.rpm == 3 and only_rpm.period is None


def test_budget_without_period_is_monthly() -> None:
    limits = Limits(max_budget=10.0)
    assert limits.period is not None and limits.period.months == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"rpm": -1},
        {"tpm": "many"},
        {"max_budget": float("nan")},
        {"rpm": True},
        {"rpm": 2.5},
        {"max_parallel": 0.5},
    ],
)
def test_bad_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match="ask an admin"):
        Limits.from_mapping(bad)


@pytest.mark.parametrize(
    ("text", "seconds", "months"),
    [
        ("30s", 30, 0),
        ("5m", 300, 0),
        ("1h", 3600, 0),
        ("hourly", 3600, 0),
        ("1d", 86400, 0),
        ("Daily", 86400, 0),
        ("7d", 604800, 0),
        ("1w", 604800, 0),
        ("30d", 30 * 86400, 0),
        ("1mo", 0, 1),
        ("monthly", 0, 1),
        ("3mo", 0, 3),
    ],
)
def test_parse_period(text: str, seconds: int, months: int) -> None:
    period = parse_period(text)
    assert (period.seconds, period.months) == (seconds, months)


@pytest.mark.parametrize("bad", ["", "0d", "d", "1y", "monthlyish", "-1d", "1.5h"])
def test_parse_period_refuses_with_the_accepted_forms(bad: str) -> None:
    with pytest.raises(InvalidRequest, match=r"1h, 1d, 7d, 30d, 1mo") as info:
        parse_period(bad)
    assert info.value.param == "limits.budget_period"


def test_windows_are_aligned_to_the_calendar_in_utc() -> None:
    now = ts(2024, 2, 14, 15, 30)  # a Wednesday
    assert parse_period("1h").window(now)[1] == ts(2024, 2, 14, 16)
    assert parse_period("1d").window(now)[1] == ts(2024, 2, 15)
    assert parse_period("1w").window(now)[1] == ts(2024, 2, 19)  # next Monday
    assert parse_period("7d").window(now) == parse_period("weekly").window(now)
    assert parse_period("monthly").window(now)[1] == ts(2024, 3, 1)
    assert parse_period("3mo").window(now)[1] == ts(2024, 4, 1)
    assert parse_period("monthly").window(ts(2024, 12, 31, 23, 59))[1] == ts(2025, 1, 1)
    day = parse_period("1d")
    assert day.window(ts(2024, 2, 14))[0] == day.window(now)[0] == day.window(ts(2024, 2, 15) - 0.001)[0]
    assert day.window(ts(2024, 2, 15))[0] == day.window(now)[0] + 1


def test_window_start_is_the_calendar_start_of_the_current_window() -> None:
    now = ts(2024, 2, 14, 15, 30)  # a Wednesday
    assert parse_period("1h").start(now) == ts(2024, 2, 14, 15)
    assert parse_period("daily").start(now) == ts(2024, 2, 14)
    assert parse_period("1w").start(now) == ts(2024, 2, 12)  # Monday
    assert parse_period("monthly").start(now) == ts(2024, 2, 1)
    assert parse_period("3mo").start(now) == ts(2024, 1, 1)
    assert parse_period("3mo").start(ts(2024, 12, 31, 23, 59)) == ts(2024, 10, 1)
    assert parse_period("12mo").start(ts(2024, 12, 31, 23, 59)) == ts(2024, 1, 1)
    assert parse_period("monthly").start(ts(2024, 3, 1)) == ts(2024, 3, 1)  # a start is inside its window
    assert parse_period("monthly").start(ts(2024, 3, 1) - 0.001) == ts(2024, 2, 1)
    for text in ("1h", "1d", "30d", "1w", "monthly", "2mo", "5mo"):
        period = parse_period(text)
        for moment in (now, ts(2023, 12, 31, 23, 59), ts(2025, 7, 1)):
            start = period.start(moment)
            end = period.window(moment)[1]
            assert start <= moment < end
            assert period.window(start)[0] == period.window(moment)[0] == period.window(start - 0.001)[0] + 1


def test_sliding_minute_arithmetic() -> None:
    index, weight = minute_of(600.0)
    assert (index, weight) == (10, 1.0)
    assert minute_of(630.0) == (10, 0.5)
    # 10 requests last minute, half of it still in the window: 5 count
    assert not over(4, 10, 0.5, 10, 1) and over(5, 10, 0.5, 10, 1)
    # a limit of 0 refuses all; one request bigger than the whole limit passes an empty window
    assert over(0, 0, 1.0, 0, 1)
    assert not over(0, 0, 1.0, 100, 500) and over(1, 0, 1.0, 100, 500)


def test_wait_time_points_at_the_first_moment_that_passes() -> None:
    # full current minute at second 1: wait for the next minute (59 s) and then a hair more
    wait = wait_time(10, 0, minute_of(61.0)[1], 10, 1)
    assert 59 < wait < 59.01
    after = 61.0 + wait
    assert not over(0, 10, minute_of(after)[1], 10, 1)
    # 10 last minute, 5 this minute, at second 30 (5 of the old still count): wait for 1 to fade
    weight = minute_of(90.0)[1]
    wait = wait_time(5, 10, weight, 10, 1)
    assert over(5, 10, weight, 10, 1) and not over(5, 10, minute_of(90.0 + wait)[1], 10, 1)
    assert over(5, 10, minute_of(90.0 + wait - 0.01)[1], 10, 1)


def test_rate_limited_is_a_429_naming_the_limit_and_the_fix() -> None:
    error = RateLimited("key:k_123", "rpm", 60, 11.2)
    assert isinstance(error, CorralError)
    assert (error.status, error.http_status, error.error_type) == (429, 429, "rate_limit_error")
    assert error.retry_after == 12 and error.headers == {"Retry-After": "12"}
    assert error.message == (
        "This key is over its rpm limit (60 requests per minute); retry in 12 s or ask an admin to raise rpm."
    )
    assert error.code == "rate_limit_exceeded" and (error.scope, error.limit) == ("key", "rpm")
    budget = RateLimited("user:alice", "max_budget", 25.0, 3 * 86400, "30d")
    assert budget.code == "budget_exceeded"
    assert budget.message.startswith("The user who owns this key is over its max_budget (25 per 30d period)")
    assert "retry in 3 days" in budget.message and "alice" not in budget.message
    assert RateLimited("key:x", "max_parallel", 2, 0.0).retry_after == 1


def test_whole_floats_and_fractional_budgets_are_read() -> None:
    limits = Limits.from_mapping({"rpm": 60.0, "max_budget": 2.5})
    assert limits.rpm == 60 and isinstance(limits.rpm, int)
    assert limits.max_budget == 2.5
