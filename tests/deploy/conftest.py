"""PostgreSQL (see tests.support.databases) and Redis for the test that runs the pod's command.

Redis comes from ``CORRAL_TEST_REDIS_URL`` (default redis://127.0.0.1:6379/0); the test gets a
key prefix of its own and only that prefix's keys are deleted afterwards. If Redis cannot be
reached the test is skipped with the reason, except when ``CI=true``: then it fails.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import RedisError

from tests.support.databases import *  # noqa: F403

REDIS_ENV = "CORRAL_TEST_REDIS_URL"


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """(url, prefix) of a reachable Redis; the prefix's keys are deleted afterwards."""
    url = os.environ.get(REDIS_ENV, "").strip() or "redis://127.0.0.1:6379/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        client.close()
        message = f"Redis not reachable at {url}: {type(exc).__name__}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true, so Redis tests must run)", pytrace=False)
        pytest.skip(f"{message}; set {REDIS_ENV} or start Redis to run this test")
    prefix = f"corral-deploy-test-{secrets.token_hex(6)}:"
    try:
        yield url, prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
