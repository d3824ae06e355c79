"""decisions enabled, or single-reading thresholds changed, by two admins after a what-if

Revision ID: 0021
Revises: 0020
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.records.db

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = triage.records.db.UtcDateTime(timezone=True)
    op.create_table(
        "decision_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("pipeline", sa.String(length=32), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("single_read_max_score", sa.Integer(), nullable=True),
        sa.Column("effective_at", when, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("what_if", sa.JSON(), nullable=False),
        sa.Column("proposed_by", sa.String(length=128), nullable=False),
        sa.Column("proposed_at", when, nullable=False),
        sa.Column("approved_by", sa.String(length=128), nullable=True),
        sa.Column("approved_at", when, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("decision_changes")
