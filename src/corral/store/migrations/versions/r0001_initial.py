"""Initial schema: providers, aliases, gateway_keys, audit_log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "providers",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("base_url", sa.String(2048), nullable=False),
        sa.Column("api_key_enc", sa.Text(), nullable=True),
        sa.Column("api_key_preview", sa.String(32), nullable=True),
        sa.Column("headers_enc", sa.Text(), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("name", name="pk_providers"),
    )
    op.create_table(
        "aliases",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("name", name="pk_aliases"),
    )
    op.create_table(
        "gateway_keys",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("owner", sa.String(256), nullable=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("models", sa.JSON(), nullable=True),
        _ts("expires_at", nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("tier", sa.String(64), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("last_used_at", nullable=True),
        sa.CheckConstraint("scope IN ('admin', 'user')", name="ck_gateway_keys_scope"),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_keys"),
    )
    op.create_index("ix_gateway_keys_owner", "gateway_keys", ["owner"])
    op.create_table(
        "audit_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        _ts("at"),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_gateway_keys_owner", table_name="gateway_keys")
    op.drop_table("gateway_keys")
    op.drop_table("aliases")
    op.drop_table("providers")
