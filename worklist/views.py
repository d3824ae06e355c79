"""What the worklist shows: queues of studies with triage's verdict, and one study in full.

A study's verdict is the one ``triage.records.verdicts`` stored on its latest version (from its state
first and its result second, so a result whose delivery failed can never show as NO FRACTURE).
Queues are filtered, ordered and limited in SQL on those stored columns, and only the rows shown
are read in full: a region's years of studies cost a page what a day's do.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from triage.outcomes import BreastOutcome, Verdict
from triage.pipelines import Pipeline
from triage.records.tables import (
    Delivery,
    DeliveryState,
    Feedback,
    Result,
    StateChange,
    Study,
    StudyState,
    StudyVersion,
)
from triage.records.verdicts import URGENT, stored_acting_outcome


class Queue(enum.StrEnum):
    TRAUMA = "trauma"  # every trauma study: FRACTURE and DOUBT first, then by arrival
    OVER_READ = "over_read"  # NO FRACTURE: eligible for discharge, read by a radiologist later
    SCREENING = "screening"  # every screen, by arrival
    SINGLE_READ = "single_read"
    DOUBLE_READ = "double_read"  # scored above the threshold, not analysed, or its result not yet acting
    HIGH_RISK = "high_risk"
    NOT_ANALYSED = "not_analysed"  # either pipeline, with the reason
    ALL = "all"  # also what triage ignored (not its intended use)


class DeliveryStatus(enum.StrEnum):
    NONE = "none"  # nothing to send (no PACS configured, or nothing built)
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WorklistFilters(BaseModel):
    queue: Queue = Queue.ALL
    state: StudyState | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    search: str = Field(default="", max_length=64)
    limit: int = Field(default=100, ge=1, le=500)


class WorklistItem(BaseModel):
    study_id: int
    patient_name: str
    patient_id: str
    accession_number: str
    study_date: str
    study_description: str
    pipeline: Pipeline | None
    version: int
    state: StudyState
    reason: str
    verdict: Verdict
    verdict_label: str = Field(description="The verdict as shown: NO FRACTURE, NOT ANALYSED, ...")
    eligible_for_discharge: bool = Field(
        description="NO FRACTURE only: eligible for discharge per local protocol; still over-read later"
    )
    probability: float | None
    score: int | None = Field(description="Screening risk score 1-10")
    high_risk: bool
    single_read_max_score: int | None = Field(description="The single-reading threshold the result used")
    model_name: str
    model_version: str
    not_enabled: dict[str, str] = Field(
        default_factory=dict,
        description="The evidence gate: each decision (rule-out, single reading, localisation) the "
        "model's validation evidence does not support, by its label, and why; the probability or "
        "score is then advisory and the study takes the conservative path",
    )
    overridden: dict[str, str] = Field(
        default_factory=dict, description="Each decision an admin enabled against the evidence: who, why"
    )
    delivery: DeliveryStatus
    feedback_count: int
    conflict: bool
    received_at: datetime
    completed_at: datetime | None


def delivery_status(states: list[DeliveryState]) -> DeliveryStatus:
    if not states:
        return DeliveryStatus.NONE
    if DeliveryState.FAILED in states:
        return DeliveryStatus.FAILED
    if DeliveryState.PENDING in states:
        return DeliveryStatus.PENDING
    return DeliveryStatus.DELIVERED


def worklist_item(
    study: Study,
    version: StudyVersion,
    result: Result | None,
    deliveries: list[DeliveryState],
    feedback_count: int,
) -> WorklistItem:
    """One row of a queue, with the verdict stored on the version."""
    outcome = result.outcome if result is not None else None
    verdict = Verdict(version.verdict)
    acting = stored_acting_outcome(version.verdict, outcome)
    return WorklistItem(
        study_id=study.id,
        patient_name=study.patient_name,
        patient_id=study.patient_id,
        accession_number=study.accession_number,
        study_date=study.study_date,
        study_description=study.study_description,
        pipeline=Pipeline(version.pipeline) if version.pipeline else None,
        version=version.number,
        state=version.state,
        reason=version.reason,
        verdict=verdict,
        verdict_label=verdict.label,
        eligible_for_discharge=acting is not None and acting.eligible_for_discharge,
        probability=acting.probability if acting is not None else None,
        score=acting.score if isinstance(acting, BreastOutcome) else None,
        high_risk=isinstance(acting, BreastOutcome) and acting.high_risk,
        single_read_max_score=acting.single_read_max_score if isinstance(acting, BreastOutcome) else None,
        not_enabled={d.label: why for d, why in acting.not_enabled.items()} if acting else {},
        overridden={d.label: why for d, why in acting.overridden.items()} if acting else {},
        model_name=result.model_name if result else "",
        model_version=result.model_version if result else "",
        delivery=delivery_status(deliveries),
        feedback_count=feedback_count,
        conflict=study.conflict,
        received_at=version.opened_at,
        completed_at=version.completed_at,
    )


def _in_queue(queue: Queue) -> ColumnElement[bool] | None:
    """The queue as a condition on the latest version's stored columns (None: every study)."""
    fracture, breast = StudyVersion.pipeline == Pipeline.FRACTURE, StudyVersion.pipeline == Pipeline.BREAST
    match queue:
        case Queue.TRAUMA:
            return fracture
        case Queue.OVER_READ:
            return and_(fracture, StudyVersion.verdict == Verdict.NO_FRACTURE)
        case Queue.SCREENING:
            return breast
        case Queue.SINGLE_READ:
            return and_(breast, StudyVersion.verdict == Verdict.SINGLE_READ)
        case Queue.DOUBLE_READ:
            waiting = (Verdict.DOUBLE_READ, Verdict.NOT_ANALYSED, Verdict.PENDING)
            return and_(breast, StudyVersion.verdict.in_(waiting))
        case Queue.HIGH_RISK:
            return and_(breast, StudyVersion.urgency == URGENT)
        case Queue.NOT_ANALYSED:
            return StudyVersion.verdict == Verdict.NOT_ANALYSED
    return None


def _order(queue: Queue) -> list[Any]:
    """Urgent first where a queue mixes urgencies (FRACTURE and high-risk screens, then DOUBT, then the
    rest), then by arrival, oldest first; on indexed columns, so a page reads only what it shows."""
    if queue in (Queue.TRAUMA, Queue.SCREENING, Queue.DOUBLE_READ, Queue.ALL):
        return [StudyVersion.urgency, StudyVersion.opened_at, StudyVersion.id]
    return [StudyVersion.opened_at, StudyVersion.id]


def _latest_versions(session: Session, filters: WorklistFilters) -> list[tuple[Study, StudyVersion]]:
    query = select(Study, StudyVersion).join(
        StudyVersion,
        and_(StudyVersion.study_id == Study.id, StudyVersion.number == Study.current_version),
    )
    if (in_queue := _in_queue(filters.queue)) is not None:
        query = query.where(in_queue)
    if filters.state is not None:
        query = query.where(StudyVersion.state == filters.state)
    if filters.received_from is not None:
        query = query.where(StudyVersion.opened_at >= filters.received_from)
    if filters.received_to is not None:
        query = query.where(StudyVersion.opened_at < filters.received_to)
    if filters.queue != Queue.ALL:
        query = query.where(StudyVersion.state != StudyState.IGNORED)
    if filters.search.strip():
        pattern = f"%{filters.search.strip().lower()}%"
        query = query.where(
            or_(
                func.lower(Study.patient_name).like(pattern),
                func.lower(Study.patient_id).like(pattern),
                func.lower(Study.accession_number).like(pattern),
            )
        )
    rows = session.execute(query.order_by(*_order(filters.queue)).limit(filters.limit)).all()
    return [(row[0], row[1]) for row in rows]


def _extras(
    session: Session, version_ids: list[int], study_ids: list[int]
) -> tuple[dict[int, Result], dict[int, list[DeliveryState]], dict[int, int]]:
    results = {
        r.version_id: r for r in session.scalars(select(Result).where(Result.version_id.in_(version_ids)))
    }
    deliveries: dict[int, list[DeliveryState]] = {}
    for version_id, state in session.execute(
        select(Delivery.version_id, Delivery.state).where(Delivery.version_id.in_(version_ids))
    ):
        deliveries.setdefault(version_id, []).append(DeliveryState(state))
    feedback = dict(
        session.execute(
            select(Feedback.study_id, func.count())
            .where(Feedback.study_id.in_(study_ids))
            .group_by(Feedback.study_id)
        ).all()
    )
    return results, deliveries, feedback


def worklist(session: Session, filters: WorklistFilters) -> list[WorklistItem]:
    """The studies of one queue, most urgent first, at most ``filters.limit``."""
    rows = _latest_versions(session, filters)
    results, deliveries, feedback = _extras(session, [v.id for _, v in rows], [s.id for s, _ in rows])
    return [
        worklist_item(
            study, version, results.get(version.id), deliveries.get(version.id, []), feedback.get(study.id, 0)
        )
        for study, version in rows
    ]


def revision(session: Session) -> int:
    """A number that changes whenever any study changes state or gets feedback (no patient data)."""
    changes = session.scalar(select(func.max(StateChange.id))) or 0
    readings = session.scalar(select(func.max(Feedback.id))) or 0
    return int(changes) + int(readings)  # both only grow, so the sum moves whenever either does
