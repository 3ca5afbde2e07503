"""The accountant's admission: limits are re-read when a key's record changes."""

from __future__ import annotations

import time

import pytest

from corral.accounting.accountant import Accountant
from corral.core.call import Call, Endpoint
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
