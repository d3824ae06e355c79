"""the leader's lease (PostgreSQL leads by it; both engines report it), and the routed flag backfilled
for instances of studies that were routed before it existed

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import triage.records.db

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leader_lease",
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("renewed_at", triage.records.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", triage.records.db.UtcDateTime(timezone=True), nullable=False),
    )
    # 0011 added instances.routed as false for every instance, so a site upgraded from 0010 showed no
    # images on the pages of the studies it already held: the instances of a study version that was
    # routed to a pipeline (it has one, and got past RECEIVING) count as routed, all of them: which
    # of them routing took was not recorded before.
    op.execute(
        "UPDATE instances SET routed = true WHERE routed = false AND EXISTS ("
        "SELECT 1 FROM study_versions v WHERE v.study_id = instances.study_id "
        "AND v.number >= instances.version_number AND v.pipeline IS NOT NULL AND v.pipeline <> '' "
        "AND v.state NOT IN ('RECEIVING', 'COMPLETE', 'IGNORED'))"
    )


def downgrade() -> None:
    op.drop_table("leader_lease")
