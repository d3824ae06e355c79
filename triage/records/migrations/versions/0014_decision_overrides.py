"""the admins' overrides of the evidence gate: a decision enabled for one model version against its
evidence, with who, when and why, until revoked

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.records.db

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "decision_overrides",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("at", triage.records.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", triage.records.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=128), nullable=True),
    )
    op.create_index("ix_decision_overrides_model", "decision_overrides", ["model_name", "model_version"])


def downgrade() -> None:
    op.drop_index("ix_decision_overrides_model", table_name="decision_overrides")
    op.drop_table("decision_overrides")
