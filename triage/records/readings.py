"""Radiologists' readings: validated against the study they judge and linked to its result."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.pipelines import Pipeline
from triage.records import discrepancies
from triage.records.tables import Feedback, FeedbackKind, Instance, Result, Study, StudyVersion


class FeedbackRejected(Exception):
    """A reading that cannot be stored as given; the message says what to change."""


KINDS_BY_PIPELINE = {
    Pipeline.FRACTURE: {FeedbackKind.FRACTURE},
    Pipeline.BREAST: {FeedbackKind.RECALL, FeedbackKind.CANCER},
}


def add_feedback(
    session: Session,
    *,
    study_id: int,
    kind: FeedbackKind,
    value: bool,
    boxes: list[dict[str, Any]],
    comment: str,
    author: str,
    now: datetime,
    version_number: int | None = None,
) -> Feedback:
    """Store a radiologist's reading of a study version (the latest unless given), linked to its result.

    Raises:
        FeedbackRejected: no such version, a kind that does not fit the study's pipeline, or a box
            on an image that is not part of the study.
    """
    study = session.get_one(Study, study_id)
    number = version_number if version_number is not None else study.current_version
    version = session.scalar(
        select(StudyVersion).where(StudyVersion.study_id == study_id, StudyVersion.number == number)
    )
    if version is None:
        raise FeedbackRejected(f"the study has no version {number}")
    allowed = KINDS_BY_PIPELINE.get(Pipeline(version.pipeline), set()) if version.pipeline else set()
    if kind not in allowed:
        fits = ", ".join(sorted(allowed)) or "none: triage does not analyse this study"
        raise FeedbackRejected(
            f"{kind} does not fit a {version.pipeline or 'unrouted'} study; it takes {fits}"
        )
    known = set(
        session.scalars(
            select(Instance.sop_instance_uid).where(
                Instance.study_id == study_id, Instance.version_number <= version.number
            )
        )
    )
    for box in boxes:
        if box["sop_instance_uid"] not in known:
            raise FeedbackRejected(
                f"image {box['sop_instance_uid']} is not part of version {number} of this study"
            )
    feedback = Feedback(
        label_id=uuid.uuid4().hex,
        study_id=study_id,
        version_id=version.id,
        result_id=session.scalar(select(Result.id).where(Result.version_id == version.id)),
        kind=kind,
        value=value,
        boxes=boxes,
        comment=comment,
        author=author,
        at=now,
    )
    session.add(feedback)
    session.flush()
    discrepancies.detect(
        session, feedback, now
    )  # a patient the AI decision touched wrongly heads the Recall queue
    return feedback
