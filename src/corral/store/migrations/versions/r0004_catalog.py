"""The model catalog: per provider and model id, a display name, enabled, input and output
prices (USD per million tokens), capabilities, context length and notes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog",
        sa.Column("provider", sa.String(128), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("input_price", sa.Double(), nullable=True),
        sa.Column("output_price", sa.Double(), nullable=True),
        sa.Column("capabilities", sa.JSON(), nullable=True),
        sa.Column("context_length", sa.Integer(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "model", name="pk_catalog"),
    )


def downgrade() -> None:
    op.drop_table("catalog")
