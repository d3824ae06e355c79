"""The only writer of study state, the outbox and the audit trail.

Every transition is a conditional update (``WHERE state = expected``), so two processes racing to
move the same study version can never both win: a study is completed, queued or claimed once.
Reads live in ``queries.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from triage.header_facts import HeaderFacts
from triage.records import verdicts
from triage.records.audit_actions import AuditAction
from triage.records.tables import (
    AuditEvent,
    Instance,
    OutboxMessage,
    QuarantinedObject,
    StateChange,
    Study,
    StudyState,
    StudyVersion,
)

TRIAGE = "triage"  # the actor of what triage does by itself
# Why a stored file without a row is in quarantine: the listener died between making it durable and
# committing its row, so it never answered, and the sender (which got no 0x0000) sends it again.
ORPHAN_REASON = "a stored file without a database row: the listener stopped before it answered"


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
    facts: HeaderFacts


def audit(
    session: Session,
    *,
    actor: str,
    action: AuditAction,
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


def study_for(session: Session, received: ReceivedInstance, now: datetime) -> Study:
    """The instance's study, created if new, and locked (on PostgreSQL) until the transaction ends.

    The lock serialises the receivers of one study, and they with the monitor that completes its
    version: an instance is either in a version before that version is queued, or in the next one.
    Two associations creating the same study at once both succeed: the loser of the insert (a
    unique violation, inside a savepoint) reads the winner's row."""
    by_uid = select(Study).where(Study.study_instance_uid == received.study_instance_uid)
    study = session.scalar(by_uid.with_for_update())
    if study is not None:
        return study
    refused_before = session.scalar(  # an orphan was not refused: its sender sends it again
        select(func.count())
        .select_from(QuarantinedObject)
        .where(QuarantinedObject.study_instance_uid == received.study_instance_uid)
        .where(QuarantinedObject.reason != ORPHAN_REASON)
    )
    try:
        with session.begin_nested():
            study = Study(
                study_instance_uid=received.study_instance_uid,
                current_version=0,
                created_at=now,
                conflict=bool(refused_before),  # an instance of it was refused: the study is incomplete
                **received.patient,
            )
            session.add(study)
            session.flush()
    except IntegrityError:
        study = session.scalars(by_uid.with_for_update().execution_options(populate_existing=True)).one()
    return study


def receiving_version(session: Session, study: Study, sender: tuple[str, str], now: datetime) -> StudyVersion:
    """Return the study's open version, opening the next one if the last was already complete."""
    latest = session.scalar(
        select(StudyVersion)
        .where(StudyVersion.study_id == study.id)
        .order_by(StudyVersion.number.desc())
        .limit(1)
        .with_for_update()  # the monitor locks it too before it completes it
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
    audit(
        session,
        actor=f"dicom:{sender[0]}",
        action=AuditAction.STUDY_RECEIVED,
        source=sender[1],
        now=now,
        study_ids=[study.id],
        detail=f"version {version.number} opened",
    )
    return version


def add_instance(session: Session, received: ReceivedInstance, now: datetime) -> StudyVersion:
    """Record a new durable instance in its study's open version (opening one if needed)."""
    study = study_for(session, received, now)
    _check_patient(session, study, received, now)
    version = receiving_version(session, study, (received.calling_ae_title, received.peer_address), now)
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
            attributes=received.facts.to_json(),
            received_at=now,
        )
    )
    return version


def _check_patient(session: Session, study: Study, received: ReceivedInstance, now: datetime) -> None:
    """Another patient under the same Study Instance UID (a modality's UID collision, a wrong merge at
    the PACS) is never merged silently: the study is flagged as conflicting, so its versions take the
    conservative path until an admin checks it, and the event is audited (without the IDs)."""
    patient_id, issuer = (
        received.patient.get("patient_id", ""),
        received.patient.get("issuer_of_patient_id", ""),
    )
    if not patient_id or not study.patient_id:
        return
    same_issuer = not issuer or not study.issuer_of_patient_id or issuer == study.issuer_of_patient_id
    if patient_id == study.patient_id and same_issuer:
        return
    if not study.conflict:
        audit(
            session,
            actor=f"dicom:{received.calling_ae_title}",
            action=AuditAction.STUDY_PATIENT_MISMATCH,
            source=received.peer_address,
            now=now,
            study_ids=[study.id],
            detail=f"instance {received.sop_instance_uid} names another patient than the study",
        )
    study.conflict = True


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
    comparison: str = "",
) -> None:
    session.add(
        QuarantinedObject(
            comparison=comparison,
            storage_key=storage_key,
            sop_instance_uid=sop_instance_uid,
            study_instance_uid=study_instance_uid,
            sha256=sha256,
            calling_ae_title=calling_ae_title,
            reason=reason,
            received_at=now,
        )
    )


def restore_original(session: Session, instance: Instance, received: ReceivedInstance, now: datetime) -> None:
    """A removed original is on disk again (the same bytes, re-sent): audited per study."""
    instance.removed_at = None
    audit(
        session, actor=f"dicom:{received.calling_ae_title}", action=AuditAction.STUDY_ORIGINAL_RESTORED,
        source=received.peer_address, now=now, study_ids=[instance.study_id],
        detail=f"{instance.sop_instance_uid} re-sent with the same content after retention removed it",
    )  # fmt: skip


def mark_routed(session: Session, study_id: int, sop_instance_uids: list[str]) -> None:
    """Routing sent these instances of the study to a pipeline (the page shows them)."""
    session.execute(
        update(Instance)
        .where(Instance.study_id == study_id, Instance.sop_instance_uid.in_(sop_instance_uids))
        .values(routed=True)
    )


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
    if new == StudyState.REPORTED:
        completed = session.scalar(select(StudyVersion.completed_at).where(StudyVersion.id == version_id))
        if completed is not None:
            session.execute(
                update(StudyVersion)
                .where(StudyVersion.id == version_id)
                .values(reported_seconds=(now - completed).total_seconds())
                .execution_options(synchronize_session=False)
            )
    verdicts.settle(session, version_id)
    return True


def restart_quiet_periods(session: Session, now: datetime) -> None:
    """After a restart, give every receiving version a full quiet period from ``now``: senders could
    not send while triage was down (the completion deadline still counts from the first instance)."""
    session.execute(
        update(StudyVersion)
        .where(StudyVersion.state == StudyState.RECEIVING, StudyVersion.last_instance_at < now)
        .values(last_instance_at=now)
        .execution_options(synchronize_session=False)
    )


def supersede_queued_before(session: Session, version: StudyVersion, now: datetime) -> None:
    """Older versions of the study still waiting in the queue are replaced by ``version``."""
    older = session.scalars(
        select(StudyVersion.id).where(
            StudyVersion.study_id == version.study_id,
            StudyVersion.number < version.number,
            StudyVersion.state == StudyState.QUEUED,
        )
    )
    for older_id in list(older):
        reason = f"replaced by version {version.number}"
        transition(session, older_id, StudyState.QUEUED, StudyState.SUPERSEDED, now, reason)


def enqueue(session: Session, task_name: str, payload: dict[str, Any], now: datetime) -> None:
    """Write a task to the outbox; the publisher sends it to the broker after this commits."""
    session.add(OutboxMessage(task_name=task_name, payload=payload, created_at=now, next_attempt_at=now))


def mark_published(session: Session, message_ids: Sequence[int], now: datetime) -> None:
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(message_ids))
        .values(published_at=now, attempts=OutboxMessage.attempts + 1)
    )


def defer_unpublished(session: Session, message_ids: Sequence[int], retry_at: datetime, error: str) -> None:
    """The broker refused: try these messages again at ``retry_at``."""
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(message_ids))
        .values(next_attempt_at=retry_at, attempts=OutboxMessage.attempts + 1, last_error=error)
    )
