"""the score drift per scanner: each result's exam probability and scanner, indexed by pipeline and
time, and the reference deciles of every model put into service

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.records.db

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("probability", sa.Float(), nullable=True))
        batch.add_column(sa.Column("scanner", sa.String(length=128), nullable=False, server_default=""))
    op.create_index("ix_results_pipeline_created_at", "results", ["pipeline", "created_at"])
    op.create_table(
        "model_references",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("pipeline", sa.String(length=32), nullable=False),
        sa.Column("deciles", sa.JSON(), nullable=False),
        sa.Column("first_loaded_at", triage.records.db.UtcDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("model_name", "model_version"),
    )


def downgrade() -> None:
    op.drop_table("model_references")
    op.drop_index("ix_results_pipeline_created_at", table_name="results")
    with op.batch_alter_table("results") as batch:
        batch.drop_column("scanner")
        batch.drop_column("probability")
