"""Usage accounting: the ``usage`` table (one row per proxied request) and its indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

_INDEXES: dict[str, tuple[list[str], bool]] = {
    "ux_usage_request_id": (["request_id"], True),
    "ix_usage_at": (["at"], False),
    "ix_usage_key_id_at": (["key_id", "at"], False),
    "ix_usage_user_at": (["user", "at"], False),
    "ix_usage_requested_model_at": (["requested_model", "at"], False),
    "ix_usage_served_model_at": (["served_model", "at"], False),
    "ix_usage_provider_at": (["provider", "at"], False),
}


def _ts(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "usage",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("request_id", sa.String(128), nullable=False),
        _ts("at"),
        sa.Column("key_id", sa.String(16), nullable=True),
        sa.Column("user", sa.String(256), nullable=True),
        sa.Column("requested_model", sa.String(256), nullable=False),
        sa.Column("served_model", sa.String(256), nullable=True),
        sa.Column("provider", sa.String(128), nullable=True),
        sa.Column("instance", sa.String(256), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.Column("streamed", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_class", sa.String(64), nullable=True),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("tokens_estimated", sa.Boolean(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("ttft_ms", sa.Double(), nullable=True),
        sa.Column("upstream_ms", sa.Double(), nullable=True),
        sa.Column("overhead_ms", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_usage"),
    )
    for name, (columns, unique) in _INDEXES.items():
        op.create_index(name, "usage", columns, unique=unique)


def downgrade() -> None:
    for name in reversed(_INDEXES):
        op.drop_index(name, table_name="usage")
    op.drop_table("usage")
