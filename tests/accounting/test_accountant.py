"""The accountant's admission: limits are re-read when a key's record changes."""

from __future__ import annotations

import time

import pytest

from corral.accounting.accountant import Accountant
from corral.core.call import Call, Endpoint
from corral.errors import PermissionDenied
from corral.keys.principal import Principal
from corral.limits import InProcessLimiter, RateLimited
from corral.usage.prices import PriceTable


def call() -> Call:
    return Call(Endpoint.CHAT, {"model": "m", "messages": []}, b"{}", "m", False, "req_1")


async def test_changed_key_limits_apply_at_once() -> None:
    acct = Accountant(
        writer=None,
        metrics=None,
        limiter=InProcessLimiter(),
        prices=PriceTable(),
        provider_type=lambda name: None,
    )
    strict = Principal(key_id="k1", scope="user", limits={"rpm": 1})
    await acct.admit(strict, call(), time.monotonic())
    with pytest.raises(RateLimited):
        await acct.admit(strict, call(), time.monotonic())
    raised = Principal(key_id="k1", scope="user", limits={"rpm": 100})  # the admin raised rpm: a new record
    await acct.admit(raised, call(), time.monotonic())


def accountant() -> Accountant:
    return Accountant(
        writer=None,
        metrics=None,
        limiter=InProcessLimiter(),
        prices=PriceTable(),
        provider_type=lambda name: None,
    )


@pytest.mark.parametrize(
    ("limits", "named"),
    [
        ({"max_budget": 5, "budget_period": "fortnight"}, "budget_period 'fortnight'"),
        ({"rpm": -3}, "'rpm' is -3"),
        ({"budget_period": 7, "max_budget": 1}, "'budget_period' must be a string"),
    ],
)
async def test_a_key_with_invalid_stored_limits_is_refused_not_let_through(
    limits: dict[str, object], named: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Values an older version stored unchecked fail closed with a 403 naming the fix, logged once."""
    acct = accountant()
    bad = Principal(key_id="k9", scope="user", limits=limits)
    for _ in range(3):
        with pytest.raises(PermissionDenied) as info:
            await acct.admit(bad, call(), time.monotonic())
        err = info.value
        assert err.http_status == 403 and err.code == "key_limits_invalid"
        assert named in err.message and "PATCH /admin/keys/k9" in err.message
    warnings = [r for r in caplog.records if r.name == "corral.accounting" and "k9" in r.getMessage()]
    assert len(warnings) == 1 and named in warnings[0].getMessage()
    fixed = Principal(key_id="k9", scope="user", limits={"max_budget": 5, "budget_period": "14d"})
    await acct.admit(fixed, call(), time.monotonic())  # the admin fixed it: a new record, admitted
