"""retention and routing per instance: when an original left storage (its row and results stay),
and whether routing sent the instance to a pipeline (the study page shows those)

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.records.db

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as table:
        table.add_column(sa.Column("removed_at", triage.records.db.UtcDateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("routed", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("instances") as table:
        table.drop_column("routed")
        table.drop_column("removed_at")
