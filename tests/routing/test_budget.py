"""RetryBudget: retries in flight stay under max(minimum, percent of active requests)."""

from __future__ import annotations

from corral.routing.budget import RetryBudget


def test_defaults() -> None:
    budget = RetryBudget()
    assert (budget.percent, budget.minimum) == (20.0, 3)
    assert (budget.active, budget.retrying, budget.denied) == (0, 0, 0)


def test_minimum_applies_when_few_requests_are_active() -> None:
    budget = RetryBudget(percent=20.0, minimum=3, active=1)
    for retrying in range(3):
        budget.retrying = retrying
        assert budget.allow()
    budget.retrying = 3
    assert not budget.allow()
    assert budget.denied == 1


def test_percentage_applies_when_many_requests_are_active() -> None:
    budget = RetryBudget(percent=20.0, minimum=3, active=100)  # 20 retries at once
    budget.retrying = 19
    assert budget.allow()
    budget.retrying = 20
    assert not budget.allow()
    budget.active = 105  # 21 now
    assert budget.allow()
    assert budget.denied == 1


def test_zero_minimum_and_no_traffic_denies_every_retry() -> None:
    budget = RetryBudget(percent=50.0, minimum=0, active=0)
    assert not budget.allow()
    budget.active = 2
    assert budget.allow()  # one retry of two requests
    budget.retrying = 1
    assert not budget.allow()


def test_fractional_share_is_rounded_down_as_envoy_does() -> None:
    budget = RetryBudget(percent=20.0, minimum=0, active=12)  # 2.4 retries
    budget.retrying = 1
    assert budget.allow()
    budget.retrying = 2
    assert not budget.allow()


def test_denied_counts_every_refusal_and_allow_does_not_reserve() -> None:
    budget = RetryBudget(percent=0.0, minimum=1, active=10)
    assert budget.allow() and budget.allow()  # allow() only checks; the caller counts retrying
    assert budget.retrying == 0
    budget.retrying = 1
    for _ in range(4):
        assert not budget.allow()
    assert budget.denied == 4
    budget.retrying = 0
    assert budget.allow()
    assert budget.denied == 4
