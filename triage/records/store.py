"""State transitions and audit records: the only writer of study state.

Every transition is a conditional update (``WHERE state = expected``), so two processes racing to
move the same study version can never both win: a study is completed, queued or claimed once.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from triage.records.tables import (
    AuditEvent,
    Delivery,
    DeliveryState,
    Feedback,
    FeedbackKind,
    Instance,
    OutboxMessage,
    QuarantinedObject,
    Result,
    ShadowResult,
    StateChange,
    Study,
    StudyState,
    StudyVersion,
)


@dataclass(frozen=True)
class ReceivedInstance:
    """One instance made durable by the listener, with the header facts the database keeps."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    storage_key: str
    sha256: str
    size_bytes: int
    calling_ae_title: str
    peer_address: str
    patient: dict[str, str]
    facts: dict[str, Any]


def find_instance(session: Session, sop_instance_uid: str) -> Instance | None:
    return session.scalar(select(Instance).where(Instance.sop_instance_uid == sop_instance_uid))


def _study_for(session: Session, received: ReceivedInstance, now: datetime) -> Study:
    study = session.scalar(select(Study).where(Study.study_instance_uid == received.study_instance_uid))
    if study is None:
        study = Study(
            study_instance_uid=received.study_instance_uid,
            current_version=0,
            created_at=now,
            **received.patient,
        )
        session.add(study)
        session.flush()
    return study


def _receiving_version(
    session: Session, study: Study, received: ReceivedInstance, now: datetime
) -> StudyVersion:
    """Return the study's open version, opening the next one if the last was already complete."""
    latest = session.scalar(
        select(StudyVersion)
        .where(StudyVersion.study_id == study.id)
        .order_by(StudyVersion.number.desc())
        .limit(1)
    )
    if latest is not None and latest.state == StudyState.RECEIVING:
        return latest
    version = StudyVersion(
        study_id=study.id,
        number=(latest.number + 1) if latest else 1,
        state=StudyState.RECEIVING,
        opened_at=now,
        last_instance_at=now,
    )
    session.add(version)
    session.flush()
    study.current_version = version.number
    reason = "first instance" if latest is None else f"instance after version {latest.number} was complete"
    session.add(StateChange(version_id=version.id, state=StudyState.RECEIVING, reason=reason, at=now))
    session.add(
        AuditEvent(
            at=now,
            actor=f"dicom:{received.calling_ae_title}",
            action="study.received",
            study_id=study.id,
            source=received.peer_address,
            detail=f"version {version.number} opened",
        )
    )
    return version


def add_instance(session: Session, received: ReceivedInstance, now: datetime) -> StudyVersion:
    """Record a new durable instance in its study's open version (opening one if needed)."""
    study = _study_for(session, received, now)
    version = _receiving_version(session, study, received, now)
    version.last_instance_at = now
    session.add(
        Instance(
            study_id=study.id,
            version_number=version.number,
            sop_instance_uid=received.sop_instance_uid,
            sop_class_uid=received.sop_class_uid,
            series_instance_uid=received.series_instance_uid,
            transfer_syntax_uid=received.transfer_syntax_uid,
            storage_key=received.storage_key,
            sha256=received.sha256,
            size_bytes=received.size_bytes,
            calling_ae_title=received.calling_ae_title,
            attributes=received.facts,
            received_at=now,
        )
    )
    return version


def add_quarantined(
    session: Session,
    *,
    storage_key: str,
    sha256: str,
    calling_ae_title: str,
    reason: str,
    now: datetime,
    sop_instance_uid: str = "",
    study_instance_uid: str = "",
) -> None:
    session.add(
        QuarantinedObject(
            storage_key=storage_key,
            sop_instance_uid=sop_instance_uid,
            study_instance_uid=study_instance_uid,
            sha256=sha256,
            calling_ae_title=calling_ae_title,
            reason=reason,
            received_at=now,
        )
    )


def flag_conflict(session: Session, received: ReceivedInstance, quarantine_key: str, now: datetime) -> None:
    """Keep a conflicting duplicate in quarantine and send the study down the conservative path.

    The stored instance (what any result was computed from) is left untouched. A new version is
    opened when needed so that the study's latest state shows the conflict.
    """
    add_quarantined(
        session,
        storage_key=quarantine_key,
        sha256=received.sha256,
        calling_ae_title=received.calling_ae_title,
        reason="same SOP Instance UID as a stored instance, different content",
        now=now,
        sop_instance_uid=received.sop_instance_uid,
        study_instance_uid=received.study_instance_uid,
    )
    study = _study_for(session, received, now)
    study.conflict = True
    version = _receiving_version(session, study, received, now)
    version.last_instance_at = now


def transition(
    session: Session,
    version_id: int,
    expected: StudyState | tuple[StudyState, ...],
    new: StudyState,
    now: datetime,
    reason: str = "",
    **values: Any,
) -> bool:
    """Move a version from one of ``expected`` to ``new``; return False if another writer got there first."""
    allowed = (expected,) if isinstance(expected, StudyState) else expected
    result = session.execute(
        update(StudyVersion)
        .where(StudyVersion.id == version_id, StudyVersion.state.in_(allowed))
        .values(state=new, reason=reason, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(StateChange(version_id=version_id, state=new, reason=reason, at=now))
    return True


def enqueue(session: Session, task_name: str, payload: dict[str, Any], now: datetime) -> None:
    """Write a task to the outbox; the publisher sends it to the broker after this commits."""
    session.add(OutboxMessage(task_name=task_name, payload=payload, created_at=now, next_attempt_at=now))


def versions_in(session: Session, *states: StudyState) -> list[StudyVersion]:
    return list(
        session.scalars(select(StudyVersion).where(StudyVersion.state.in_(states)).order_by(StudyVersion.id))
    )


def instances_of(session: Session, version: StudyVersion) -> list[Instance]:
    """Every instance a version comprises: those received in it and in every earlier version."""
    return list(
        session.scalars(
            select(Instance)
            .where(Instance.study_id == version.study_id, Instance.version_number <= version.number)
            .order_by(Instance.id)
        )
    )


def pending_task_payloads(session: Session, task_name: str) -> list[dict[str, Any]]:
    """Payloads of outbox messages of one task not yet published."""
    return list(
        session.scalars(
            select(OutboxMessage.payload).where(
                OutboxMessage.task_name == task_name, OutboxMessage.published_at.is_(None)
            )
        )
    )


def count_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(StudyVersion.state, func.count()).group_by(StudyVersion.state)).all()
    return {str(state): int(count) for state, count in rows}


def add_delivery(
    session: Session,
    version_id: int,
    kind: str,
    sop_instance_uid: str,
    storage_key: str,
    now: datetime,
    failed: str = "",
) -> None:
    """Queue one object for the PACS; ``failed`` records one that could not even be built."""
    session.add(
        Delivery(
            version_id=version_id,
            kind=kind,
            sop_instance_uid=sop_instance_uid or f"unbuilt-{version_id}-{kind}",
            storage_key=storage_key,
            state=DeliveryState.FAILED if failed else DeliveryState.PENDING,
            last_error=failed,
            next_attempt_at=now,
            created_at=now,
        )
    )


def has_deliveries(session: Session, version_id: int) -> bool:
    return session.scalar(select(func.count()).where(Delivery.version_id == version_id)) != 0


def due_deliveries(session: Session, now: datetime, limit: int) -> list[Delivery]:
    return list(
        session.scalars(
            select(Delivery)
            .where(Delivery.state == DeliveryState.PENDING, Delivery.next_attempt_at <= now)
            .order_by(Delivery.id)
            .limit(limit)
        )
    )


def record_delivery(
    session: Session, delivery_id: int, ok: bool, error: str, now: datetime, max_attempts: int
) -> None:
    """Record one attempt; on the last acknowledgement the study is REPORTED, on the last failure
    (``max_attempts``) the delivery is FAILED and an ANALYSED study goes conservative."""
    delivery = session.get_one(Delivery, delivery_id)
    delivery.attempts += 1
    if ok:
        delivery.state, delivery.delivered_at, delivery.last_error = DeliveryState.DELIVERED, now, ""
        remaining = session.scalar(
            select(func.count()).where(
                Delivery.version_id == delivery.version_id, Delivery.state != DeliveryState.DELIVERED
            )
        )
        if remaining == 0:
            transition(
                session,
                delivery.version_id,
                StudyState.ANALYSED,
                StudyState.REPORTED,
                now,
                "results acknowledged by the PACS",
            )
        return
    delivery.last_error = error
    if delivery.attempts >= max_attempts:
        delivery.state = DeliveryState.FAILED
        version = session.get_one(StudyVersion, delivery.version_id)
        session.add(
            AuditEvent(
                at=now,
                actor="triage",
                action="delivery.failed",
                study_id=version.study_id,
                detail=f"{delivery.kind} {delivery.sop_instance_uid} not accepted after "
                f"{delivery.attempts} attempts: {error}",
            )
        )
        transition(
            session,
            delivery.version_id,
            StudyState.ANALYSED,
            StudyState.NOT_ANALYSED,
            now,
            f"results could not be delivered to the PACS after {delivery.attempts} attempts ({error}); "
            "read as if triage had not seen the study",
        )
        return
    backoff = min(300.0, 2.0**delivery.attempts) * random.uniform(0.5, 1.5)  # noqa: S311 - jitter
    delivery.next_attempt_at = now + timedelta(seconds=backoff)


def add_result(session: Session, **values: Any) -> None:
    """Record a pipeline's result for a study version (one per version)."""
    session.add(Result(**values))


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    source: str,
    now: datetime,
    study_ids: Iterable[int | None] = (None,),
    detail: str = "",
) -> None:
    """Record that ``actor`` did ``action`` (to each study given) from ``source``."""
    for study_id in study_ids:
        session.add(
            AuditEvent(at=now, actor=actor, action=action, study_id=study_id, source=source, detail=detail)
        )


class FeedbackRejected(Exception):
    """A reading that cannot be stored as given; the message says what to change."""


_KINDS_BY_PIPELINE = {
    "fracture": {FeedbackKind.FRACTURE},
    "breast": {FeedbackKind.RECALL, FeedbackKind.CANCER},
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
    allowed = _KINDS_BY_PIPELINE.get(version.pipeline, set())
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
    result_id = session.scalar(select(Result.id).where(Result.version_id == version.id))
    feedback = Feedback(
        label_id=uuid.uuid4().hex,
        study_id=study_id,
        version_id=version.id,
        result_id=result_id,
        kind=kind,
        value=value,
        boxes=boxes,
        comment=comment,
        author=author,
        at=now,
    )
    session.add(feedback)
    return feedback


def add_shadow_result(session: Session, **values: Any) -> None:
    """Record a candidate model's result in shadow mode (once per version and model)."""
    exists = session.scalar(
        select(func.count()).where(
            ShadowResult.version_id == values["version_id"],
            ShadowResult.model_name == values["model_name"],
            ShadowResult.model_version == values["model_version"],
        )
    )
    if not exists:
        session.add(ShadowResult(**values))
