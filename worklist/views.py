"""What the worklist shows: queues of studies with triage's verdict, and one study in full.

A study's verdict is read from its latest version's state first and its result second, so a
result whose delivery failed (the version went NOT_ANALYSED) can never show as NO FRACTURE.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from triage.imaging import HeaderFacts
from triage.outcomes import BreastOutcome, FractureOutcome, MarkKind, Verdict
from triage.pipelines import Pipeline
from triage.records.tables import (
    Delivery,
    DeliveryState,
    Feedback,
    Instance,
    Result,
    StateChange,
    Study,
    StudyState,
    StudyVersion,
)
from triage.records.verdicts import acting_outcome, acting_verdict


class Queue(enum.StrEnum):
    TRAUMA = "trauma"  # every trauma study: FRACTURE and DOUBT first, then by arrival
    OVER_READ = "over_read"  # NO FRACTURE: eligible for discharge, read by a radiologist later
    SCREENING = "screening"  # every screen, by arrival
    SINGLE_READ = "single_read"
    DOUBLE_READ = "double_read"  # scored above the threshold, or not analysed
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
    delivery: DeliveryStatus
    feedback_count: int
    conflict: bool
    received_at: datetime
    completed_at: datetime | None


class StateChangeView(BaseModel):
    state: StudyState
    reason: str
    at: datetime


class ResultView(BaseModel):
    analysed: bool
    summary: str
    model_name: str
    model_version: str
    weights_sha256: str
    software_version: str
    device: str
    outcome: Annotated[FractureOutcome | BreastOutcome, Field(discriminator="pipeline")]
    created_at: datetime


class DeliveryView(BaseModel):
    kind: str
    sop_instance_uid: str
    state: DeliveryState
    attempts: int
    last_error: str
    delivered_at: datetime | None


class VersionView(BaseModel):
    number: int
    state: StudyState
    reason: str
    pipeline: Pipeline | None
    history: list[StateChangeView]
    result: ResultView | None
    deliveries: list[DeliveryView]


class MarkView(BaseModel):
    corners: list[float] = Field(description="[x0, y0, x1, y1] in source pixels")
    score: float
    kind: MarkKind = Field(description="fracture (solid), doubt (dashed) or lesion (dashed)")


class InstanceView(BaseModel):
    sop_instance_uid: str
    series_instance_uid: str
    version: int
    modality: str
    body_part_examined: str
    laterality: str
    view: str
    marks: list[MarkView]


class BoxView(BaseModel):
    sop_instance_uid: str
    corners: list[float]


class FeedbackView(BaseModel):
    label_id: str
    version: int
    kind: str
    value: bool
    boxes: list[BoxView]
    comment: str
    author: str
    at: datetime
    judges_model: str = Field(description="The model (name version) whose result this reading judges")


class StudyDetail(BaseModel):
    item: WorklistItem
    study_instance_uid: str
    patient_birth_date: str
    issuer_of_patient_id: str
    versions: list[VersionView]
    instances: list[InstanceView]
    feedback: list[FeedbackView]


def _delivery_status(states: list[DeliveryState]) -> DeliveryStatus:
    if not states:
        return DeliveryStatus.NONE
    if DeliveryState.FAILED in states:
        return DeliveryStatus.FAILED
    if DeliveryState.PENDING in states:
        return DeliveryStatus.PENDING
    return DeliveryStatus.DELIVERED


def _item(
    study: Study,
    version: StudyVersion,
    result: Result | None,
    deliveries: list[DeliveryState],
    feedback_count: int,
) -> WorklistItem:
    outcome = result.outcome if result is not None else None
    verdict = acting_verdict(version.state, outcome)
    acting = acting_outcome(version.state, outcome)
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
        model_name=result.model_name if result else "",
        model_version=result.model_version if result else "",
        delivery=_delivery_status(deliveries),
        feedback_count=feedback_count,
        conflict=study.conflict,
        received_at=version.opened_at,
        completed_at=version.completed_at,
    )


def _in_queue(item: WorklistItem, queue: Queue) -> bool:
    fracture, breast = item.pipeline == Pipeline.FRACTURE, item.pipeline == Pipeline.BREAST
    match queue:
        case Queue.TRAUMA:
            return fracture
        case Queue.OVER_READ:
            return fracture and item.verdict == Verdict.NO_FRACTURE
        case Queue.SCREENING:
            return breast
        case Queue.SINGLE_READ:
            return breast and item.verdict == Verdict.SINGLE_READ
        case Queue.DOUBLE_READ:
            return breast and item.verdict in (Verdict.DOUBLE_READ, Verdict.NOT_ANALYSED)
        case Queue.HIGH_RISK:
            return breast and item.high_risk
        case Queue.NOT_ANALYSED:
            return item.verdict == Verdict.NOT_ANALYSED
    return True


def _sort_key(item: WorklistItem, queue: Queue) -> tuple[int, datetime]:
    """Urgent first (FRACTURE, DOUBT; HIGH_RISK), then by arrival, oldest first."""
    if queue == Queue.TRAUMA:
        return ({Verdict.FRACTURE: 0, Verdict.DOUBT: 1}.get(item.verdict, 2), item.received_at)
    if queue in (Queue.SCREENING, Queue.DOUBLE_READ, Queue.ALL):
        urgent = item.verdict in (Verdict.FRACTURE, Verdict.DOUBT) or item.high_risk
        return (0 if urgent else 1, item.received_at)
    return (0, item.received_at)


def _latest_versions(session: Session, filters: WorklistFilters) -> list[tuple[Study, StudyVersion]]:
    query = select(Study, StudyVersion).join(
        StudyVersion,
        and_(StudyVersion.study_id == Study.id, StudyVersion.number == Study.current_version),
    )
    if filters.state is not None:
        query = query.where(StudyVersion.state == filters.state)
    if filters.received_from is not None:
        query = query.where(StudyVersion.opened_at >= filters.received_from)
    if filters.received_to is not None:
        query = query.where(StudyVersion.opened_at < filters.received_to)
    if filters.queue in (Queue.TRAUMA, Queue.OVER_READ):
        query = query.where(StudyVersion.pipeline == Pipeline.FRACTURE)
    elif filters.queue not in (Queue.ALL, Queue.NOT_ANALYSED):
        query = query.where(StudyVersion.pipeline == Pipeline.BREAST)
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
    return [(row[0], row[1]) for row in session.execute(query.order_by(StudyVersion.opened_at)).all()]


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
    items = [
        _item(
            study, version, results.get(version.id), deliveries.get(version.id, []), feedback.get(study.id, 0)
        )
        for study, version in rows
    ]
    chosen = [item for item in items if _in_queue(item, filters.queue)]
    chosen.sort(key=lambda item: _sort_key(item, filters.queue))
    return chosen[: filters.limit]


def revision(session: Session) -> int:
    """A number that changes whenever any study changes state or gets feedback (no patient data)."""
    changes = session.scalar(select(func.max(StateChange.id))) or 0
    readings = session.scalar(select(func.max(Feedback.id))) or 0
    return int(changes) + int(readings)  # both only grow, so the sum moves whenever either does


def _marks(result: Result | None) -> dict[str, list[MarkView]]:
    marks: dict[str, list[MarkView]] = {}
    for mark in result.outcome.marks if result is not None and result.analysed else ():
        view = MarkView(corners=list(mark.corners), score=mark.score, kind=mark.kind)
        marks.setdefault(mark.sop_instance_uid, []).append(view)
    return marks


def study_detail(session: Session, study_id: int) -> StudyDetail | None:
    study = session.get(Study, study_id)
    if study is None or not study.versions:
        return None
    version_ids = [v.id for v in study.versions]
    results = {
        r.version_id: r for r in session.scalars(select(Result).where(Result.version_id.in_(version_ids)))
    }
    latest = study.versions[-1]
    deliveries = list(session.scalars(select(Delivery).where(Delivery.version_id.in_(version_ids))))
    marks = _marks(results.get(latest.id))
    readings = list(
        session.scalars(select(Feedback).where(Feedback.study_id == study.id).order_by(Feedback.id))
    )
    result_models = {r.id: f"{r.model_name} {r.model_version}".strip() for r in results.values()}
    number_of = {v.id: v.number for v in study.versions}
    return StudyDetail(
        item=_item(
            study,
            latest,
            results.get(latest.id),
            [DeliveryState(d.state) for d in deliveries if d.version_id == latest.id],
            len(readings),
        ),
        study_instance_uid=study.study_instance_uid,
        patient_birth_date=study.patient_birth_date,
        issuer_of_patient_id=study.issuer_of_patient_id,
        versions=[
            VersionView(
                number=v.number,
                state=v.state,
                reason=v.reason,
                pipeline=Pipeline(v.pipeline) if v.pipeline else None,
                history=[StateChangeView(state=c.state, reason=c.reason, at=c.at) for c in v.changes],
                result=ResultView.model_validate(results[v.id], from_attributes=True)
                if v.id in results
                else None,
                deliveries=[
                    DeliveryView.model_validate(d, from_attributes=True)
                    for d in deliveries
                    if d.version_id == v.id
                ],
            )
            for v in study.versions
        ],
        instances=[_instance(i, marks) for i in sorted(study.instances, key=lambda i: i.id)],
        feedback=[
            FeedbackView(
                label_id=f.label_id,
                version=number_of.get(f.version_id, 0),
                kind=f.kind,
                value=f.value,
                boxes=[BoxView(**b) for b in f.boxes],
                comment=f.comment,
                author=f.author,
                at=f.at,
                judges_model=result_models.get(f.result_id, "") if f.result_id else "",
            )
            for f in readings
        ],
    )


def _instance(instance: Instance, marks: dict[str, list[MarkView]]) -> InstanceView:
    facts = HeaderFacts.from_json(instance.attributes)
    return InstanceView(
        sop_instance_uid=instance.sop_instance_uid,
        series_instance_uid=instance.series_instance_uid,
        version=instance.version_number,
        modality=facts.modality,
        body_part_examined=facts.body_part_examined,
        laterality=facts.laterality,
        view=facts.view,
        marks=marks.get(instance.sop_instance_uid, []),
    )
