"""the acting verdict, its urgency and the completion-to-report seconds stored on each study version,
and a screen's score on its result: the worklist's queues and the metrics are filtered, ordered,
counted and limited in SQL, at a region's years of studies

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from triage.outcomes import OUTCOME, BreastOutcome, FractureOutcome
from triage.records.tables import StudyState
from triage.records.verdicts import acting_outcome, acting_verdict, urgency

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000


def upgrade() -> None:
    with op.batch_alter_table("study_versions") as table:
        table.add_column(sa.Column("verdict", sa.String(length=16), nullable=False, server_default="PENDING"))
        table.add_column(sa.Column("urgency", sa.SmallInteger(), nullable=False, server_default="2"))
        table.add_column(sa.Column("reported_seconds", sa.Float(), nullable=True))
    with op.batch_alter_table("results") as table:
        table.add_column(sa.Column("score", sa.SmallInteger(), nullable=True))
    op.create_index("ix_study_versions_queue", "study_versions", ["pipeline", "urgency", "opened_at"])
    op.create_index("ix_study_versions_urgency", "study_versions", ["urgency", "opened_at"])
    op.create_index("ix_study_versions_verdict", "study_versions", ["verdict", "opened_at"])
    op.create_index("ix_study_versions_opened", "study_versions", ["opened_at"])
    _backfill(op.get_bind())


def _backfill(connection: sa.Connection) -> None:
    """Every existing version's verdict, as triage.records.verdicts computes it, a batch at a time."""
    after = 0
    while True:
        rows = connection.execute(
            sa.text(
                "SELECT v.id, v.state, r.id, r.outcome, "
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.version_id = v.id), "
                "(SELECT MIN(c.at) FROM state_changes c WHERE c.version_id = v.id AND c.state = 'REPORTED'), "
                "v.completed_at "
                "FROM study_versions v LEFT JOIN results r ON r.version_id = v.id "
                "WHERE v.id > :after ORDER BY v.id LIMIT :batch"
            ),
            {"after": after, "batch": _BATCH},
        ).all()
        if not rows:
            return
        for version_id, state, result_id, raw, reporting, reported, completed in rows:
            outcome = _outcome(raw)
            verdict = acting_verdict(StudyState(str(state)), outcome, bool(reporting))
            acting = acting_outcome(StudyState(str(state)), outcome, bool(reporting))
            seconds = _seconds(reported, completed)
            connection.execute(
                sa.text(
                    "UPDATE study_versions SET verdict = :v, urgency = :u, reported_seconds = :s "
                    "WHERE id = :id"
                ),
                {"v": str(verdict), "u": urgency(verdict, acting), "s": seconds, "id": version_id},
            )
            if result_id is not None and isinstance(outcome, BreastOutcome) and outcome.score is not None:
                connection.execute(
                    sa.text("UPDATE results SET score = :s WHERE id = :id"),
                    {"s": outcome.score, "id": result_id},
                )
        after = rows[-1][0]


def _seconds(reported: object, completed: object) -> float | None:
    """Seconds between two stored UTC times (SQLite hands them back as naive text)."""
    if reported is None or completed is None:
        return None
    at, since = (_utc(t) for t in (reported, completed))
    return (at - since).total_seconds()


def _utc(value: object) -> datetime:
    found = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found


def _outcome(raw: object) -> FractureOutcome | BreastOutcome | None:
    """A stored outcome (JSON text on SQLite, parsed already on PostgreSQL)."""
    if raw is None:
        return None
    return OUTCOME.validate_json(raw) if isinstance(raw, str | bytes) else OUTCOME.validate_python(raw)


def downgrade() -> None:
    op.drop_index("ix_study_versions_opened", "study_versions")
    op.drop_index("ix_study_versions_verdict", "study_versions")
    op.drop_index("ix_study_versions_urgency", "study_versions")
    op.drop_index("ix_study_versions_queue", "study_versions")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch copy of study_versions would drop the
    # table that other tables' foreign keys name.
    op.drop_column("results", "score")
    for column in ("reported_seconds", "urgency", "verdict"):
        op.drop_column("study_versions", column)
