"""The score drift per scanner against the model's reference deciles (admins): the counts per decile
bin for a plot, and the population stability index."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from triage.pipelines import Pipeline
from triage.records import drift
from triage.records.db import utcnow
from worklist.deps import Admin, State
from worklist.schemas import AUTH

router = APIRouter(prefix="/api/drift", tags=["admin"])


class ScannerDrift(BaseModel):
    pipeline: Pipeline
    model: str = Field(description="The model in force whose results are counted")
    scanner: str = Field(description="Manufacturer and model from the headers; empty when not given")
    studies: int
    counts: list[int] = Field(description="Studies per bin of the model's reference deciles, lowest first")
    psi: float | None = Field(
        description="Population stability index against a tenth per bin; null below the minimum"
    )


@router.get("", responses=AUTH)
def score_drift(principal: Admin, state: State) -> list[ScannerDrift]:
    """Per pipeline and scanner, the analysed studies of the model in force within the drift window."""
    settings, now = state.settings, utcnow()
    with state.database.reading() as session:
        return [
            ScannerDrift.model_validate(found, from_attributes=True)
            for pipeline in Pipeline
            for found in drift.drift(
                session, pipeline, now, settings.drift_window_days, settings.drift_min_studies
            )
        ]
