"""delivery alternates: the same result in another SOP class, and which file the PACS acknowledged

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as table:
        table.add_column(
            sa.Column("alternate_storage_key", sa.String(length=255), nullable=False, server_default="")
        )
        table.add_column(
            sa.Column("sent_storage_key", sa.String(length=255), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as table:
        table.drop_column("sent_storage_key")
        table.drop_column("alternate_storage_key")
