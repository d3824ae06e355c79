"""storage commitment requests to the PACS (PS3.4 Annex J, push model), one per try

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.records.db

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = triage.records.db.UtcDateTime(timezone=True)
    op.create_table(
        "commitments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("study_versions.id"), nullable=False),
        sa.Column("transaction_uid", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", when, nullable=False),
        sa.Column("report_due_at", when, nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("settled_at", when, nullable=True),
        sa.UniqueConstraint("transaction_uid"),
    )
    op.create_index("ix_commitments_due", "commitments", ["state", "next_attempt_at"])
    op.create_index("ix_commitments_version_id", "commitments", ["version_id"])


def downgrade() -> None:
    op.drop_index("ix_commitments_version_id", table_name="commitments")
    op.drop_index("ix_commitments_due", table_name="commitments")
    op.drop_table("commitments")
