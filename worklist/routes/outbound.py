"""Operators' view of what triage sends out: DICOM objects for the PACS and HL7 messages for the RIS,
by state, and a failed one sent again (admins only, audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi import Path as PathParam
from pydantic import BaseModel

from triage.records import outbound
from triage.records.audit_actions import AuditAction
from triage.records.tables import DeliveryState
from worklist.deps import Admin, State, audit
from worklist.schemas import AUTH, MAX_ID, Resend, problems

router = APIRouter(prefix="/api/outbound", tags=["admin"])


class OutboundItem(BaseModel):
    destination: outbound.Destination
    id: int
    study_id: int
    version: int
    kind: str
    identifier: str
    state: DeliveryState
    attempts: int
    last_error: str
    created_at: datetime
    delivered_at: datetime | None


@router.get("", responses=AUTH)
def list_outbound(
    principal: Admin,
    state: State,
    delivery_state: Annotated[DeliveryState | None, Query(alias="state")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[OutboundItem]:
    """Objects and messages, newest first, of one state (FAILED: gave up) or all; audited, since the
    list names studies."""
    with state.database.session() as session:
        found = outbound.list_outbound(session, delivery_state, limit)
        audit(session, principal, AuditAction.WORKLIST_VIEWED, sorted({o.study_id for o in found}) or None)
    return [OutboundItem.model_validate(o, from_attributes=True) for o in found]


@router.post("/{destination}/{item_id}/resend", responses=problems(400, 401, 403, 404, 409, 422))
def resend(
    destination: outbound.Destination,
    item_id: Annotated[int, PathParam(ge=1, le=MAX_ID)],
    body: Resend,
    principal: Admin,
    state: State,
) -> OutboundItem:
    """Send a FAILED withdrawal object or HL7 message again, with fresh tries and deadline. A failed
    result object is refused (409): its failure withdrew its verdict."""
    with state.database.session() as session:
        try:
            queued = outbound.resend(
                session, destination, item_id, body.reason, principal.name, principal.source,
                state.database.now(),
            )  # fmt: skip
        except LookupError as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
        except outbound.NotResendable as error:
            raise HTTPException(status.HTTP_409_CONFLICT, f"not sent again: {error}") from None
    return OutboundItem.model_validate(queued, from_attributes=True)
