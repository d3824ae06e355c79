"""Outcomes from outside triage (admins): the HL7 messages the hospital's systems sent (matched to a
study and read, kept unmatched for someone to sort out, or rejected with why; the list shows each
message whole, so viewing it is audited like any patient data), and a screening programme's list of
interval cancers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from triage.records import inbound, interval_cancers
from triage.records.audit_actions import AuditAction
from triage.records.inbound import InboundState
from worklist.deps import Admin, State, audit
from worklist.schemas import AUTH, problems

router = APIRouter(prefix="/api/outcomes", tags=["admin"])


class InboundItem(BaseModel):
    id: int
    sending_application: str
    control_id: str | None
    message_type: str
    state: InboundState
    detail: str = Field(description="What was read, or why nothing was")
    accession_number: str
    study_instance_uid: str
    study_id: int | None
    outcomes: list[str]
    raw: str = Field(description="The message as received (patient data)")
    received_at: datetime


@router.get("", responses=AUTH)
def list_outcomes(
    principal: Admin,
    state: State,
    message_state: Annotated[InboundState | None, Query(alias="state")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[InboundItem]:
    """Messages newest first, of one state (UNMATCHED: for an admin to sort out) or all; audited."""
    with state.database.session() as session:
        found = [
            InboundItem.model_validate(m, from_attributes=True)
            for m in inbound.listed(session, message_state, limit)
        ]
        studies = sorted({m.study_id for m in found if m.study_id is not None})
        detail = f"HL7 outcome messages {', '.join(str(m.id) for m in found)}"[:2000]
        audit(session, principal, AuditAction.WORKLIST_VIEWED, studies or None, detail)
    return found


class IntervalCancers(BaseModel):
    csv: str = Field(
        min_length=1,
        max_length=1_000_000,
        description="patient_id,diagnosis_date (YYYY-MM-DD), with that header",
    )


class IntervalCancersImported(BaseModel):
    matched: int = Field(description="Rows recorded as their screen's cancer outcome")
    unmatched: list[str] = Field(description="Rows that matched no screen: line and why, no patient data")


@router.post("/interval-cancers", responses=problems(400, 401, 403, 413, 422))
def import_interval_cancers(body: IntervalCancers, principal: Admin, state: State) -> IntervalCancersImported:
    """Record each interval cancer on the woman's last screen before it (within two years)."""
    with state.database.session() as session:
        try:
            found = interval_cancers.import_csv(
                session, body.csv, principal.name, state.settings, state.database.now()
            )
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
    return IntervalCancersImported(matched=found.matched, unmatched=found.unmatched)
