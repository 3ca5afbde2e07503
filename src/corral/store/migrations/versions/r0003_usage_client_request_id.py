"""Usage records keep the client's ``X-Request-Id`` apart from corral's own request id.

Before this revision the client's id, when it sent one, WAS the record's ``request_id``: the
idempotency key of the table, so a client repeating an id lost the second request's record.
Corral now always generates ``request_id`` itself and keeps the client's value here, for
correlation only (it is not unique).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column("usage", sa.Column("client_request_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:  # SQLite cannot drop a column in place everywhere
        batch.drop_column("client_request_id")
