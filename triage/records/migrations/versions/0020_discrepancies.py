"""the Recall queue: patients an AI decision touched wrongly, found from outcomes, until a radiologist
records the contact

Revision ID: 0020
Revises: 0019
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.records.db

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = triage.records.db.UtcDateTime(timezone=True)
    op.create_table(
        "discrepancies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("study_versions.id"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("found_at", when, nullable=False),
        sa.Column("notified_at", when, nullable=True),
        sa.Column("notify_attempts", sa.Integer(), nullable=False),
        sa.Column("notify_next_at", when, nullable=True),
        sa.Column("notify_error", sa.Text(), nullable=False),
        sa.Column("closed_at", when, nullable=True),
        sa.Column("closed_by", sa.String(length=128), nullable=True),
        sa.Column("contact_note", sa.Text(), nullable=False),
        sa.UniqueConstraint("study_id", "kind"),
    )
    op.create_index("ix_discrepancies_open", "discrepancies", ["closed_at", "id"])
    op.create_index("ix_discrepancies_notify", "discrepancies", ["notified_at", "notify_next_at"])


def downgrade() -> None:
    op.drop_index("ix_discrepancies_notify", table_name="discrepancies")
    op.drop_index("ix_discrepancies_open", table_name="discrepancies")
    op.drop_table("discrepancies")
