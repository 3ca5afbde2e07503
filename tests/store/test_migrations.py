"""Migrations: a fresh upgrade matches the tables, reopening is a no-op, starters can race."""

from __future__ import annotations

import asyncio
import importlib.resources
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from corral.security.crypto import Crypto
from corral.store import Store, open_store
from corral.store.errors import StoreUnavailable
from corral.store.migrate import current_revision, head_revision
from corral.store.tables import metadata

TABLES = {"providers", "aliases", "gateway_keys", "audit_log", "alembic_version"}


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def _versions(store: Store) -> list[str]:
    async with store.engine.connect() as conn:
        return [row[0] for row in await conn.execute(text("SELECT version_num FROM alembic_version"))]


def test_migration_files_ship_with_the_package() -> None:
    package = importlib.resources.files("corral.store.migrations")
    assert package.joinpath("env.py").is_file()
    assert package.joinpath("script.py.mako").is_file()
    assert any(
        p.name.endswith(".py") and p.name != "__init__.py" for p in package.joinpath("versions").iterdir()
    )


async def test_fresh_upgrade_creates_the_schema_of_tables_py(store: Store) -> None:
    assert await current_revision(store.engine) == head_revision()
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_tables) >= TABLES
        assert await conn.run_sync(_diff) == []


async def test_reopening_is_a_no_op(database_url: str, crypto: Crypto) -> None:
    for _ in range(3):
        store = await open_store(database_url, crypto=crypto)
        assert await _versions(store) == [head_revision()]
        await store.close()


async def test_concurrent_open_store_in_one_process(database_url: str, crypto: Crypto) -> None:
    stores = await asyncio.gather(*(open_store(database_url, crypto=crypto) for _ in range(4)))
    try:
        assert await _versions(stores[0]) == [head_revision()]
        await stores[1].providers.create({"name": "p", "type": "ollama", "base_url": "http://h"}, actor="t")
        assert [p.name for p in await stores[2].providers.list()] == ["p"]
    finally:
        for store in stores:
            await store.close()


RACER = textwrap.dedent(
    """
    import asyncio, pathlib, sys, time
    from corral.security.crypto import Crypto, generate_key
    from corral.store import open_store

    async def main() -> None:
        crypto = Crypto([generate_key()])
        barrier = pathlib.Path(sys.argv[2])
        (barrier / sys.argv[3]).touch()
        while not (barrier / "go").exists():  # everyone imported: start together
            time.sleep(0.001)
        store = await open_store(sys.argv[1], crypto=crypto)
        await store.close()

    asyncio.run(main())
    """
)


async def test_concurrent_open_store_from_separate_processes(
    database_url: str, crypto: Crypto, tmp_path: Path
) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", RACER, database_url, str(barrier), f"ready-{i}",
            stderr=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        for i in range(4)
    ]  # fmt: skip
    while len(list(barrier.glob("ready-*"))) < len(procs):
        await asyncio.sleep(0.01)
    (barrier / "go").touch()
    results = [await proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
    store = await open_store(database_url, crypto=crypto)
    try:
        assert await _versions(store) == [head_revision()]
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await store.close()


async def test_a_database_from_a_newer_corral_is_refused(database_url: str, crypto: Crypto) -> None:
    store = await open_store(database_url, crypto=crypto)
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'ffff9999'"))
    await store.close()
    with pytest.raises(StoreUnavailable, match="newer corral"):
        await open_store(database_url, crypto=crypto)
