"""HL7 messages from the hospital's systems (outcomes), kept whole; studies findable by accession

Revision ID: 0019
Revises: 0018
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.records.db

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sending_application", sa.String(length=64), nullable=False),
        sa.Column("control_id", sa.String(length=64), nullable=True),
        sa.Column("message_type", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("accession_number", sa.String(length=64), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), nullable=True),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("received_at", triage.records.db.UtcDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("sending_application", "control_id"),
    )
    op.create_index("ix_inbound_messages_state", "inbound_messages", ["state", "id"])
    op.create_index("ix_studies_accession_number", "studies", ["accession_number"])


def downgrade() -> None:
    op.drop_index("ix_studies_accession_number", table_name="studies")
    op.drop_index("ix_inbound_messages_state", table_name="inbound_messages")
    op.drop_table("inbound_messages")
