"""spend_since on SQLite and PostgreSQL: summed cost per key or user from a moment on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from corral.store import Store
from corral.usage import StoreSink
from corral.usage import spend as spend_module
from corral.usage.spend import spend_since
from tests.usage.factory import T0, record


async def test_sums_cost_per_key_and_per_user_from_the_moment_on(store: Store) -> None:
    rows = [
        record(1, key_id="k1", user="alice", at=T0 - timedelta(microseconds=1), cost_usd=100.0),  # before
        record(2, key_id="k1", user="alice", at=T0, cost_usd=0.25),  # at the moment: counted
        record(3, key_id="k1", user="bob", at=T0 + timedelta(days=3), cost_usd=0.5),
        record(4, key_id="k2", user="alice", at=T0 + timedelta(hours=1), cost_usd=2.0),
        record(5, key_id="k3", user=None, at=T0 + timedelta(hours=1), cost_usd=0.0),
        record(6, key_id="k4", user="carol", at=T0 + timedelta(hours=1), cost_usd=7.0),  # not asked for
    ]
    await StoreSink(store.engine).write(rows)
    engine = store.engine
    assert await spend_since(engine, "key_id", ["k1", "k2", "k3", "nobody"], T0) == {"k1": 0.75, "k2": 2.0}
    assert await spend_since(engine, "user", ["alice", "bob"], T0) == {"alice": 2.25, "bob": 0.5}
    assert await spend_since(engine, "key_id", ["k1"], T0 - timedelta(days=1)) == {"k1": 100.75}
    assert await spend_since(engine, "key_id", [], T0) == {}
    # a name that looks like SQL is only ever a bound value
    assert await spend_since(engine, "user", ["alice' OR '1'='1"], T0) == {}


async def test_many_names_are_read_in_batches(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spend_module, "BATCH", 2)
    rows = [record(i, key_id=f"k{i}", at=T0 + timedelta(seconds=i), cost_usd=float(i)) for i in range(1, 6)]
    await StoreSink(store.engine).write(rows)
    spent = await spend_since(store.engine, "key_id", [f"k{i}" for i in range(1, 6)], T0)
    assert spent == {f"k{i}": float(i) for i in range(1, 6)}
