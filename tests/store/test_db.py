"""Database URLs, opening errors, SQLite settings."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from corral.errors import ConfigError
from corral.security.crypto import Crypto
from corral.store import Store, database_url, open_store
from corral.store.db import normalize_url, safe_url
from corral.store.errors import StoreUnavailable


def test_default_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    assert database_url({}, tmp_path) == f"sqlite+aiosqlite:///{tmp_path / 'corral.db'}"


def test_env_then_explicit_win(tmp_path: Path) -> None:
    env = {"CORRAL_DATABASE_URL": "postgres://u:p@db:5432/corral"}
    assert database_url(env, tmp_path) == "postgresql+asyncpg://u:p@db:5432/corral"
    assert database_url(env, tmp_path, "sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert database_url({"CORRAL_DATABASE_URL": "  "}, tmp_path).startswith("sqlite+aiosqlite:///")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("postgres://u@h:6543/d", "postgresql+asyncpg://u@h:6543/d"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("sqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
        ("sqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u@h/d?sslmode=require", "postgresql+asyncpg://u@h/d?ssl=require"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_url(raw) == expected


@pytest.mark.parametrize("raw", ["mysql://root:hunter2@h/d", "hunter2", "http://x:hunter2@h/"])
def test_unsupported_urls_are_refused_without_echoing_them(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        normalize_url(raw)
    assert "hunter2" not in str(info.value)
    assert "postgresql://" in str(info.value)  # says what to use instead


def test_safe_url_masks_the_password() -> None:
    assert "hunter2" not in safe_url("postgresql+asyncpg://u:hunter2@h/d")


async def test_unreachable_postgres_fails_with_a_clear_message(crypto: Crypto) -> None:
    with pytest.raises(StoreUnavailable) as info:
        await open_store("postgresql://corral:hunter2secret@127.0.0.1:1/corral", crypto=crypto)
    message = str(info.value)
    assert "hunter2secret" not in message
    assert "127.0.0.1:1" in message and "CORRAL_DATABASE_URL" in message


async def test_missing_sqlite_directory(tmp_path: Path, crypto: Crypto) -> None:
    with pytest.raises(StoreUnavailable, match="does not exist"):
        await open_store(f"sqlite:///{tmp_path / 'nope' / 'corral.db'}", crypto=crypto)


async def test_sqlite_file_is_private_and_in_wal_mode(sqlite_url: str, crypto: Crypto) -> None:
    store = await open_store(sqlite_url, crypto=crypto)
    try:
        path = Path(sqlite_url.removeprefix("sqlite:///"))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
    finally:
        await store.close()


async def test_store_basics(store: Store) -> None:
    assert store.dialect in ("sqlite", "postgresql")
    assert await store.ping()
    assert "Store(" in repr(store)
