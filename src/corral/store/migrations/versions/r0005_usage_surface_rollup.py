"""Usage records say which API the client spoke (``surface``), and usage is rolled up per
minute, hour and day (``usage_rollup``) so long ranges are read from totals, not rows.

Rows written before this revision have no surface (NULL). The rollup is built here from the
existing rows (minute rows for the last two days only, as the writer keeps them): 16 grouped
scans of the table, 10 minutes for a million rows on SQLite on a busy 2-core machine.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | tuple[str, ...] | None = None
depends_on: str | tuple[str, ...] | None = None

LATENCY_BUCKETS = 62  # corral.store.tables.LATENCY_BUCKETS at this revision


def upgrade() -> None:
    op.add_column("usage", sa.Column("surface", sa.String(32), nullable=True))
    op.create_table(
        "usage_rollup",
        sa.Column("grain", sa.Integer(), nullable=False),
        sa.Column("dim", sa.String(16), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.String(257), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in ("requests", "errors", "estimated", "prompt_tokens", "completion_tokens")
        ),
        sa.Column("total_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=False),
        sa.Column("ttft_count", sa.BigInteger(), nullable=False),
        sa.Column("ttft_sum_ms", sa.Double(), nullable=False),
        *(sa.Column(f"lat_{i:02d}", sa.Integer(), nullable=False) for i in range(LATENCY_BUCKETS)),
        sa.PrimaryKeyConstraint("grain", "dim", "start", "value", name="pk_usage_rollup"),
    )
    from corral.usage.rollup import backfill  # the writer's own aggregation, so both agree

    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("usage_rollup")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("surface")
