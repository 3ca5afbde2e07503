"""PostgreSQL (see tests.support.databases) and Redis (tests.support.rediskeys: a key prefix of
the test's own, its keys deleted afterwards) for the test that runs the pod's command."""

from __future__ import annotations

from tests.support.databases import *  # noqa: F403
from tests.support.rediskeys import *  # noqa: F403 - the redis_prefix fixture
