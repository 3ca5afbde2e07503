"""What N workers without Redis refuse, and how they share what they can share."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import pytest

from corral.config.schema import Config, ProviderConfig
from corral.control.workers import problems, refusal, shared_store
from corral.gateway import SlotShare
from corral.limits import InProcessLimiter, Limits, LimitsUnavailable, make_limiter
from corral.limits.unshared import UnsharedLimiter
from corral.store.keys import KeyRecord


def _provider(name: str, max_parallel: int) -> ProviderConfig:
    return ProviderConfig(name=name, type="ollama", base_url="http://127.0.0.1:1", max_parallel=max_parallel)


def test_one_worker_or_nothing_to_count_starts() -> None:
    config = Config(source="t", user_limits={"alice": {"rpm": 5}}, providers=(_provider("a", 1),))
    assert problems(config, 1) == []
    assert problems(Config(source="t", providers=(_provider("a", 4), _provider("b", 0))), 2) == []


def test_user_limits_and_unsplittable_slots_are_refused_naming_the_fix() -> None:
    config = Config(source="t", user_limits={"alice": {"rpm": 60}}, providers=(_provider("small", 1),))
    found = problems(config, 2)
    assert len(found) == 2 and "user_limits" in found[0] and "small" in found[1]
    message = refusal(found, 2)
    assert "redis_url" in message and "--workers 1" in message
    assert shared_store(dataclasses.replace(config, redis_url="redis://x"), {})
    assert shared_store(config, {"CORRAL_REDIS_URL": "redis://x"}) and not shared_store(config, {})


def test_stored_keys_with_limits_are_refused() -> None:
    fields: dict[str, Any] = {f.name: None for f in dataclasses.fields(KeyRecord)}
    limited = KeyRecord(
        **{**fields, "id": "k1", "name": "ci", "enabled": True, "limits": MappingProxyType({"rpm": 5})}
    )
    free = dataclasses.replace(limited, id="k2", name="free", limits=MappingProxyType({}))
    off = dataclasses.replace(limited, id="k3", name="off", enabled=False)
    found = problems(Config(source="t"), 2, [limited, free, off])
    assert len(found) == 1 and "1 stored key(s)" in found[0] and "ci" in found[0]


@pytest.mark.parametrize(("max_parallel", "workers"), [(4, 2), (5, 2), (7, 3), (4, 4), (16, 5)])
def test_slots_are_split_and_add_up_to_max_parallel(max_parallel: int, workers: int) -> None:
    shares = [SlotShare(i, workers).of("p", max_parallel) for i in range(workers)]
    assert sum(shares) == max_parallel and max(shares) - min(shares) <= 1
    assert SlotShare(0, workers).of("p", 0) == 0  # no cap stays no cap
    assert SlotShare(0, 1).of("p", max_parallel) == max_parallel


async def test_an_unshared_limiter_refuses_limited_keys_and_passes_the_rest() -> None:
    limiter = make_limiter(None, "p", workers=3)
    assert isinstance(limiter, UnsharedLimiter)
    assert isinstance(make_limiter(None, "p"), InProcessLimiter)
    lease = await limiter.admit("key:free", Limits(), estimated_tokens=1)
    await lease.done(tokens=1, cost=0.0)
    with pytest.raises(LimitsUnavailable) as refused:
        await limiter.admit_many([("key:a", Limits()), ("user:b", Limits(rpm=60))], estimated_tokens=1)
    assert "redis_url" in str(refused.value) and "3 worker" in str(refused.value)
    assert limiter.stats.errors == 1
    await limiter.close()
