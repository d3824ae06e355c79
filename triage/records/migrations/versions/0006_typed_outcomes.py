"""typed outcomes: stored result JSON names its pipeline; one spelling of the fracture states

Results and shadow results written before outcomes were typed hold untyped JSON: fracture states
spelt "NO FRACTURE", a derived "eligible_for_discharge", an empty object for a study that was not
analysed. Each becomes the JSON of ``triage.outcomes.FractureOutcome`` / ``BreastOutcome``.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FRACTURE_KEYS = ("state", "probability", "thresholds", "images", "skipped", "reason")
_BREAST_KEYS = (
    "score", "route", "high_risk", "probability", "single_read_max_score", "decile_cut_points",
    "per_breast", "per_view", "skipped", "reason",
)  # fmt: skip


def typed(pipeline: str, outcome: dict[str, Any], summary: str) -> dict[str, Any]:
    """One stored outcome in the typed shape (already typed ones are returned unchanged)."""
    if "pipeline" in outcome:
        return outcome
    keys = _FRACTURE_KEYS if pipeline == "fracture" else _BREAST_KEYS
    new = {key: outcome[key] for key in keys if key in outcome}
    if pipeline == "fracture" and new.get("state") is not None:
        new["state"] = str(new["state"]).replace(" ", "_")
    analysed = new.get("state" if pipeline == "fracture" else "score") is not None
    if not analysed and not new.get("reason"):
        new["reason"] = summary
    return {"pipeline": pipeline, **new}


def untyped(outcome: dict[str, Any]) -> dict[str, Any]:
    """The reverse, for a downgrade."""
    old = {key: value for key, value in outcome.items() if key != "pipeline"}
    if outcome.get("pipeline") == "fracture":
        if old.get("state") is None:
            return {"skipped": old["skipped"]} if old.get("skipped") else {}
        old["state"] = str(old["state"]).replace("_", " ")
        old["eligible_for_discharge"] = old["state"] == "NO FRACTURE"
        old.pop("reason", None)
    return old


def _rewrite(table: str, convert: Any) -> None:
    rows = sa.table(
        table,
        sa.column("id", sa.Integer),
        sa.column("pipeline", sa.String),
        sa.column("summary", sa.Text),
        sa.column("outcome", sa.JSON),
    )
    connection = op.get_bind()
    for row in connection.execute(
        sa.select(rows.c.id, rows.c.pipeline, rows.c.summary, rows.c.outcome)
    ).all():
        connection.execute(
            rows.update()
            .where(rows.c.id == row.id)
            .values(outcome=convert(row.pipeline, row.outcome, row.summary))
        )


def upgrade() -> None:
    for table in ("results", "shadow_results"):
        _rewrite(table, typed)


def downgrade() -> None:
    for table in ("results", "shadow_results"):
        _rewrite(table, lambda _pipeline, outcome, _summary: untyped(outcome))
