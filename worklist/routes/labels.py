"""Readings as training labels, for ML engineers: no patient identity in them."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from triage.records.audit_actions import AuditAction
from worklist import labels
from worklist.deps import MlEngineer, State, audit
from worklist.schemas import AUTH

router = APIRouter(prefix="/api", tags=["labels"])
_LABELS = TypeAdapter(list[labels.Label])


@router.get(
    "/labels", response_model=list[labels.Label], responses={200: {"content": {"text/csv": {}}}, **AUTH}
)
def export_labels(principal: MlEngineer, state: State, format: Literal["json", "csv"] = "json") -> Response:
    """Every reading as a training label, without patient identity (opaque keys only)."""
    with state.database.session() as session:
        rows = labels.export(session, state.label_key)
        audit(session, principal, AuditAction.LABELS_EXPORTED, detail=f"{len(rows)} labels, {format}")
    if format == "csv":
        return Response(
            labels.to_csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="triage-labels.csv"'},
        )
    return JSONResponse(_LABELS.dump_python(rows, mode="json"))
