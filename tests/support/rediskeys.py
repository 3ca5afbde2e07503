"""The Redis key-prefix fixture of every test that needs Redis: one reachable Redis, a key
prefix of the test's own, and only that prefix's keys deleted afterwards.

Redis comes from ``CORRAL_TEST_REDIS_URL`` (default redis://127.0.0.1:6379/0). If it cannot be
reached the test is skipped with the reason, except when ``CI=true``: then it fails. The prefix
has no trailing separator: ``RedisLimiter(url, prefix)`` takes it as it is, and a gateway's
``CORRAL_REDIS_PREFIX`` is ``f"{prefix}:"``. A test module or conftest uses it with
``from tests.support.rediskeys import *`` (as ``tests.support.databases``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import RedisError

__all__ = ["redis_prefix"]

ENV_VAR = "CORRAL_TEST_REDIS_URL"


def redis_url() -> str:
    return os.environ.get(ENV_VAR, "").strip() or "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """(url, prefix) of a reachable Redis; the keys under the prefix are deleted afterwards."""
    url = redis_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        client.close()
        message = f"Redis not reachable at {url}: {type(exc).__name__}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true, so Redis tests must run)", pytrace=False)
        pytest.skip(f"{message}; set {ENV_VAR} or start Redis to run this test")
    prefix = f"corral-test-{secrets.token_hex(6)}"
    try:
        yield url, prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
