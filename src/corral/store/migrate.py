"""Schema migrations with Alembic, run in code at start and safe when gateways start together.

There is no ``alembic.ini``: the ``Config`` is built here and points at the ``migrations``
package. The whole upgrade runs in one transaction that first takes a lock:

* PostgreSQL: ``pg_advisory_xact_lock`` on a fixed key (released by the commit), with a
  ``lock_timeout`` so a stuck peer produces an error instead of a hang;
* SQLite: the transaction starts with ``BEGIN IMMEDIATE``, the database's single write lock
  (the other starter waits for it through ``busy_timeout``).

The second gateway therefore reads the version table only after the first has committed,
finds it at head, and does nothing. DDL is transactional on both backends, so a failed
migration leaves the schema as it was.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.store.access import WRITE_OPTION

MIGRATIONS = Path(__file__).with_name("migrations")
PG_LOCK_KEY = 0x636F7272616C  # b"corral": the advisory lock every corral migration takes


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to head, holding the migration lock for the whole transaction."""
    async with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL lock_timeout = '120s'"))
            await conn.execute(select(func.pg_advisory_xact_lock(PG_LOCK_KEY)))
        await conn.run_sync(_upgrade)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def _main(url: str) -> int:
    from corral.store.db import _why, create_engine  # the parent's engine settings and messages

    engine = create_engine(url)
    try:
        await upgrade(engine)
    except Exception as exc:
        sys.stderr.write(_why(exc, url) + "\n")
        return 1
    finally:
        await engine.dispose()
    return 0


if __name__ == "__main__":  # run by open_store in a child process; see corral.store.db
    raise SystemExit(asyncio.run(_main(os.environ["CORRAL_MIGRATE_URL"])))
