"""Conflicts: a study whose images disagree (a duplicate with other content, an instance of it refused)
takes the conservative path until an admin has checked it. The instances themselves are in ``store``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.records import store
from triage.records.audit_actions import AuditAction
from triage.records.store import ReceivedInstance
from triage.records.tables import Comparison, QuarantinedObject, Study


def flag_conflict(session: Session, received: ReceivedInstance, quarantine_key: str, now: datetime) -> None:
    """Keep a conflicting duplicate in quarantine and send the study down the conservative path.

    The stored instance (what any result was computed from) is left untouched. A new version is
    opened when needed so that the study's latest state shows the conflict.
    """
    store.add_quarantined(
        session,
        storage_key=quarantine_key,
        sha256=received.sha256,
        calling_ae_title=received.calling_ae_title,
        reason="same SOP Instance UID as a stored instance, different content",
        now=now,
        sop_instance_uid=received.sop_instance_uid,
        study_instance_uid=received.study_instance_uid,
        comparison=Comparison.PENDING,  # a re-send in another transfer syntax may be the same image
    )
    study = store.study_for(session, received, now)
    study.conflict = True
    version = store.receiving_version(session, study, (received.calling_ae_title, received.peer_address), now)
    version.last_instance_at = now


def flag_refused(
    session: Session, study_instance_uid: str, sender: tuple[str, str], reason: str, now: datetime
) -> None:
    """An instance of a study was refused (quarantined with a failure status): the study lacks an
    image, so no verdict on it may clear a patient. A known study is flagged as conflicting and gets
    a new version (its latest state shows it); an unknown one is flagged when it is created (from the
    quarantine row, which names the study)."""
    study = session.scalar(
        select(Study).where(Study.study_instance_uid == study_instance_uid).with_for_update()
    )
    if study is None:
        return
    if not study.conflict:
        store.audit(
            session, actor=f"dicom:{sender[0]}", action=AuditAction.STUDY_INSTANCE_REFUSED, source=sender[1],
            now=now, study_ids=[study.id], detail=reason,
        )  # fmt: skip
    study.conflict = True
    version = store.receiving_version(session, study, sender, now)
    version.last_instance_at = now


def clear_conflict(
    session: Session, study: Study, *, actor: str, source: str, reason: str, now: datetime
) -> None:
    """An admin checked the quarantined object: versions received from now on are analysed again."""
    study.conflict = False
    for row in session.scalars(
        select(QuarantinedObject).where(
            QuarantinedObject.study_instance_uid == study.study_instance_uid,
            QuarantinedObject.comparison != Comparison.SAME,
        )
    ):
        row.comparison = Comparison.RESOLVED
    store.audit(
        session,
        actor=actor,
        action=AuditAction.CONFLICT_RESOLVED,
        source=source,
        now=now,
        study_ids=[study.id],
        detail=reason,
    )


def pending_comparisons(session: Session, limit: int = 10) -> list[QuarantinedObject]:
    """Quarantined duplicates not compared with their stored instance yet, oldest first."""
    query = select(QuarantinedObject).where(QuarantinedObject.comparison == Comparison.PENDING)
    return list(session.scalars(query.order_by(QuarantinedObject.id).limit(limit)))


def record_comparison(session: Session, row_id: int, same: bool, why: str, now: datetime) -> bool:
    """What the comparison found. The same image (another transfer syntax): the row says so, and
    the study's conflict is lifted when nothing else of it is unresolved. Returns whether lifted."""
    row = session.get_one(QuarantinedObject, row_id)
    row.comparison = Comparison.SAME if same else Comparison.DIFFERS
    row.reason = f"{row.reason}; compared: {why}"
    study = session.scalar(
        select(Study).where(Study.study_instance_uid == row.study_instance_uid).with_for_update()
    )
    if not same or study is None or not study.conflict:
        return False
    blocking = session.scalar(
        select(QuarantinedObject.id).where(
            QuarantinedObject.study_instance_uid == row.study_instance_uid,
            QuarantinedObject.comparison.not_in((Comparison.SAME, Comparison.RESOLVED)),
        )
    )
    if blocking is not None:
        return False
    study.conflict = False
    store.audit(
        session, actor=store.TRIAGE, action=AuditAction.CONFLICT_CLEARED, source=store.TRIAGE, now=now,
        study_ids=[study.id], detail=f"instance {row.sop_instance_uid} re-sent: {why}",
    )  # fmt: skip
    return True
