"""Database fixtures: every store test runs on SQLite (a temporary file) and on PostgreSQL.

PostgreSQL comes from ``CORRAL_TEST_POSTGRES_URL`` (default: user postgres on 127.0.0.1:5432).
Each test run creates one database named ``corral_test_<random>`` and drops only that one at
the end; every test gets it with an empty ``public`` schema. If PostgreSQL cannot be reached
the PostgreSQL tests are skipped with the reason, except when ``CI=true``: then they fail.

Use from a conftest: ``from tests.support.databases import *  # noqa: F403`` brings the
fixtures ``database_url`` (both backends), ``sqlite_url``, ``postgres_url``, ``crypto`` and
``store`` (an opened Store on ``database_url``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from corral.security.crypto import Crypto, generate_key
from corral.store import Store, open_store

ENV_VAR = "CORRAL_TEST_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server_url() -> str:
    """A libpq-style URL of the PostgreSQL server, pointing at its maintenance database."""
    return os.environ.get(ENV_VAR, "").strip() or DEFAULT_URL


def with_database(url: str, name: str) -> str:
    return make_url(url).set(drivername="postgresql", database=name).render_as_string(hide_password=False)


def unavailable(reason: str) -> NoReturn:
    message = f"PostgreSQL not reachable at {make_url(server_url()).render_as_string()}: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true, so PostgreSQL tests must run)", pytrace=False)
    pytest.skip(f"{message}; set {ENV_VAR} or start PostgreSQL to run these tests")


async def connect(url: str) -> Any:
    return await asyncpg.connect(with_database(url, make_url(url).database or "postgres"), timeout=5)


async def fetch(url: str, query: str, *args: object) -> list[Any]:
    """Run one query on ``url`` directly through asyncpg (to look at raw rows)."""
    conn = await connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def _create(name: str) -> None:
    conn = await connect(server_url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop(name: str) -> None:
    conn = await connect(server_url())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _reset(url: str) -> None:
    conn = await connect(url)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """This run's own database (created once, dropped at the end): its URL."""
    name = f"corral_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_create(name))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unavailable(f"{type(exc).__name__}: {exc}")
    try:
        yield with_database(server_url(), name)
    finally:
        asyncio.run(_drop(name))


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The run's PostgreSQL database with an empty schema."""
    asyncio.run(_reset(postgres_database))
    return postgres_database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'corral.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend in turn."""
    url = request.getfixturevalue(f"{request.param}_url")
    assert isinstance(url, str)
    return url


@pytest.fixture
def crypto() -> Crypto:
    return Crypto([generate_key()])


@pytest.fixture
async def store(database_url: str, crypto: Crypto) -> AsyncIterator[Store]:
    opened = await open_store(database_url, crypto=crypto)
    try:
        yield opened
    finally:
        await opened.close()


__all__ = ["crypto", "database_url", "postgres_database", "postgres_url", "sqlite_url", "store"]
