"""decisions switched off by the live evidence or an admin, and resumed, per pipeline; readings
indexed by kind and time for the live evidence's window

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.records.db

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "decision_switches",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("pipeline", sa.String(length=32), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("off", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", triage.records.db.UtcDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_decision_switches_pipeline", "decision_switches", ["pipeline", "decision"])
    op.create_index("ix_feedback_kind_at", "feedback", ["kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_kind_at", table_name="feedback")
    op.drop_index("ix_decision_switches_pipeline", table_name="decision_switches")
    op.drop_table("decision_switches")
