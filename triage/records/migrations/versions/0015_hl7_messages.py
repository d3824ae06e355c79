"""HL7 messages for the RIS: one ORU^R01 per final state change, sent until acknowledged, and the
sender's cursor over the state changes

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.records.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = triage.records.db.UtcDateTime(timezone=True)
    op.create_table(
        "hl7_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("study_versions.id"), nullable=False),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("state_change_id", sa.Integer(), sa.ForeignKey("state_changes.id"), nullable=False),
        sa.Column("control_id", sa.String(length=20), nullable=False),
        sa.Column("result_status", sa.String(length=1), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", when, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("ack_code", sa.String(length=2), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("delivered_at", when, nullable=True),
        sa.UniqueConstraint("state_change_id"),
        sa.UniqueConstraint("control_id"),
    )
    op.create_index("ix_hl7_messages_due", "hl7_messages", ["state", "next_attempt_at"])
    op.create_index("ix_hl7_messages_version_id", "hl7_messages", ["version_id"])
    op.create_index("ix_hl7_messages_study_id", "hl7_messages", ["study_id"])
    op.create_table(
        "hl7_cursors",
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("since_change_id", sa.Integer(), nullable=False),
        sa.Column("last_change_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", when, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hl7_cursors")
    op.drop_index("ix_hl7_messages_study_id", table_name="hl7_messages")
    op.drop_index("ix_hl7_messages_version_id", table_name="hl7_messages")
    op.drop_index("ix_hl7_messages_due", table_name="hl7_messages")
    op.drop_table("hl7_messages")
