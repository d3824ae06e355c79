"""The Recall queue (radiologists): patients an AI decision touched wrongly, found from outcomes;
each leaves the queue only when a radiologist records how the patient was contacted and what was
done. Listing shows patient data and is audited; closing is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from triage.records import discrepancies
from triage.records.audit_actions import AuditAction
from triage.records.db import utcnow
from triage.records.discrepancies import DiscrepancyKind
from triage.records.status_tables import Discrepancy
from triage.records.tables import Study
from worklist.deps import Radiologist, State, audit
from worklist.schemas import AUTH, MAX_ID, TEXT, problems

router = APIRouter(prefix="/api/recall", tags=["worklist"])


class RecallItem(BaseModel):
    id: int
    kind: DiscrepancyKind
    label: str
    study_id: int
    patient_name: str
    patient_id: str
    accession_number: str
    source: str = Field(description="Who or what reported the outcome")
    detail: str
    found_at: datetime
    notified_at: datetime | None
    notify_error: str = Field(description="Why the notification has not reached anyone yet")
    closed_at: datetime | None
    closed_by: str | None
    contact_note: str


class Contact(BaseModel):
    note: str = Field(
        min_length=3,
        max_length=2000,
        pattern=TEXT,
        description="How the patient was contacted, what was done",
    )


def _item(row: Discrepancy, study: Study) -> RecallItem:
    kind = DiscrepancyKind(row.kind)
    return RecallItem(
        id=row.id, kind=kind, label=kind.label, study_id=row.study_id, patient_name=study.patient_name,
        patient_id=study.patient_id, accession_number=study.accession_number, source=row.source,
        detail=row.detail, found_at=row.found_at, notified_at=row.notified_at, notify_error=row.notify_error,
        closed_at=row.closed_at, closed_by=row.closed_by, contact_note=row.contact_note,
    )  # fmt: skip


@router.get("", responses=AUTH)
def recall_queue(
    principal: Radiologist,
    state: State,
    closed: Annotated[bool, Query(description="Also the closed ones, newest first")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[RecallItem]:
    """Open discrepancies, oldest first (then closed ones when asked); audited as viewed."""
    with state.database.session() as session:
        found = [_item(row, study) for row, study in discrepancies.listed(session, closed, limit)]
        if found:
            audit(
                session,
                principal,
                AuditAction.WORKLIST_VIEWED,
                sorted({d.study_id for d in found}),
                "recall queue",
            )
    return found


@router.post("/{discrepancy_id}/close", responses=problems(400, 401, 403, 404, 409, 422))
def close(
    discrepancy_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
    body: Contact,
    principal: Radiologist,
    state: State,
) -> RecallItem:
    """Record how the patient was contacted and what was done; the discrepancy leaves the queue."""
    with state.database.session() as session:
        try:
            row = discrepancies.close(session, discrepancy_id, body.note, principal.name, utcnow())
        except LookupError as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
        except ValueError as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        return _item(row, session.get_one(Study, row.study_id))
