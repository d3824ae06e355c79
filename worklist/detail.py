"""One study in full for its page: versions with their history, results and deliveries, the
images with the AI's marks, and the readings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.header_facts import HeaderFacts
from triage.outcomes import BreastOutcome, FractureOutcome, MarkKind
from triage.pipelines import Pipeline
from triage.records.tables import (
    Delivery,
    DeliveryState,
    Feedback,
    Hl7Message,
    Instance,
    Result,
    Study,
    StudyState,
    StudyVersion,
)
from worklist.views import WorklistItem, worklist_item


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


class Hl7MessageView(BaseModel):
    """An HL7 result message to the RIS: P (preliminary) or C (a correction), and what came of it."""

    control_id: str
    result_status: str
    state: DeliveryState
    attempts: int
    ack_code: str
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
    hl7_messages: list[Hl7MessageView] = Field(default_factory=list)


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
    shown: bool = Field(description="Routed to a pipeline: the page shows its image (frame 0)")


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


def _marks(result: Result | None) -> dict[str, list[MarkView]]:
    marks: dict[str, list[MarkView]] = {}
    for mark in result.outcome.marks if result is not None and result.analysed else ():
        view = MarkView(corners=list(mark.corners), score=mark.score, kind=mark.kind)
        marks.setdefault(mark.sop_instance_uid, []).append(view)
    return marks


def study_detail(session: Session, study_id: int) -> StudyDetail | None:
    """Everything the study page shows (None: no such study); results and deliveries read once."""
    study = session.get(Study, study_id)
    if study is None or not study.versions:
        return None
    version_ids = [v.id for v in study.versions]
    results = {
        r.version_id: r for r in session.scalars(select(Result).where(Result.version_id.in_(version_ids)))
    }
    deliveries = list(session.scalars(select(Delivery).where(Delivery.version_id.in_(version_ids))))
    messages = list(
        session.scalars(select(Hl7Message).where(Hl7Message.study_id == study.id).order_by(Hl7Message.id))
    )
    readings = list(
        session.scalars(select(Feedback).where(Feedback.study_id == study.id).order_by(Feedback.id))
    )
    latest = study.versions[-1]
    marks = _marks(results.get(latest.id))
    latest_deliveries = [DeliveryState(d.state) for d in deliveries if d.version_id == latest.id]
    return StudyDetail(
        item=worklist_item(study, latest, results.get(latest.id), latest_deliveries, len(readings)),
        study_instance_uid=study.study_instance_uid,
        patient_birth_date=study.patient_birth_date,
        issuer_of_patient_id=study.issuer_of_patient_id,
        versions=[
            _version(
                v,
                results.get(v.id),
                [d for d in deliveries if d.version_id == v.id],
                [m for m in messages if m.version_id == v.id],
            )
            for v in study.versions
        ],
        instances=[_instance(i, marks) for i in sorted(study.instances, key=lambda i: i.id)],
        feedback=[_reading(f, study, results) for f in readings],
    )


def _version(
    version: StudyVersion, result: Result | None, deliveries: list[Delivery], messages: list[Hl7Message]
) -> VersionView:
    return VersionView(
        number=version.number,
        state=version.state,
        reason=version.reason,
        pipeline=Pipeline(version.pipeline) if version.pipeline else None,
        history=[StateChangeView(state=c.state, reason=c.reason, at=c.at) for c in version.changes],
        result=ResultView.model_validate(result, from_attributes=True) if result is not None else None,
        deliveries=[DeliveryView.model_validate(d, from_attributes=True) for d in deliveries],
        hl7_messages=[Hl7MessageView.model_validate(m, from_attributes=True) for m in messages],
    )


def _reading(feedback: Feedback, study: Study, results: dict[int, Result]) -> FeedbackView:
    judged = next((r for r in results.values() if r.id == feedback.result_id), None)
    return FeedbackView(
        label_id=feedback.label_id,
        version=next((v.number for v in study.versions if v.id == feedback.version_id), 0),
        kind=feedback.kind,
        value=feedback.value,
        boxes=[BoxView(**b) for b in feedback.boxes],
        comment=feedback.comment,
        author=feedback.author,
        at=feedback.at,
        judges_model=f"{judged.model_name} {judged.model_version}".strip() if judged else "",
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
        shown=instance.routed and instance.removed_at is None,
    )
