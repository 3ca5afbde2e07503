"""Alembic environment: runs on the connection ``corral.store.migrate`` passes in.

The connection is already inside the locked transaction, so Alembic joins it instead of
starting its own, and everything commits (or rolls back) together.
"""

from __future__ import annotations

from alembic import context

from corral.store.tables import metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "corral runs its migrations itself at start (corral.store.migrate.upgrade); "
            "the alembic command line is not configured for this project."
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
