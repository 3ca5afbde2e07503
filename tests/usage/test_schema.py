"""The usage table: created by revisions 0002-0003 exactly as tables.py says, indexed, and reversible."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from corral.store import Store
from corral.store.migrate import alembic_config, current_revision, upgrade
from corral.store.tables import metadata, usage

INDEXES = {
    "ux_usage_request_id": (["request_id"], True),
    "ix_usage_at": (["at"], False),
    "ix_usage_key_id_at": (["key_id", "at"], False),
    "ix_usage_user_at": (["user", "at"], False),
    "ix_usage_requested_model_at": (["requested_model", "at"], False),
    "ix_usage_served_model_at": (["served_model", "at"], False),
    "ix_usage_provider_at": (["provider", "at"], False),
}


def _indexes(conn: Connection) -> dict[str, tuple[list[str], bool]]:
    return {
        str(ix["name"]): (list(ix["column_names"]), bool(ix["unique"]))
        for ix in inspect(conn).get_indexes("usage")
    }


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


def _downgrade(conn: Connection, to: str = "0001") -> None:
    command.downgrade(alembic_config(conn), to)


def _columns(conn: Connection) -> set[str]:
    return {str(c["name"]) for c in inspect(conn).get_columns("usage")}


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def test_the_migrated_usage_table_matches_tables_py(store: Store) -> None:
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_indexes) == INDEXES
        assert await conn.run_sync(_diff) == []
    assert {ix.name for ix in usage.indexes} == set(INDEXES)


async def test_revision_0002_downgrades_and_upgrades_again(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.run_sync(_downgrade)
    assert await current_revision(store.engine) == "0001"
    async with store.engine.connect() as conn:
        assert "usage" not in await conn.run_sync(_tables)
    await upgrade(store.engine)
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_indexes) == INDEXES
        assert await conn.run_sync(_diff) == []


async def test_revision_0003_adds_client_request_id_and_keeps_rows_both_ways(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.run_sync(_downgrade, "0002")
    async with store.engine.connect() as conn:
        assert "client_request_id" not in await conn.run_sync(_columns)
    async with store.engine.begin() as conn:  # a row written by the previous version
        await conn.exec_driver_sql(
            "INSERT INTO usage (request_id, at, requested_model, attempts, fallback, streamed, status, "
            "prompt_tokens, completion_tokens, total_tokens, tokens_estimated, cost_usd, latency_ms) "
            "VALUES ('req-1', '2026-01-01 00:00:00', 'm', 1, false, false, 200, 0, 0, 0, false, 0, 0)"
        )
    await upgrade(store.engine)
    async with store.engine.connect() as conn:
        assert "client_request_id" in await conn.run_sync(_columns)
        assert await conn.run_sync(_diff) == []
        rows = (await conn.exec_driver_sql("SELECT request_id, client_request_id FROM usage")).all()
    assert [tuple(r) for r in rows] == [("req-1", None)]
