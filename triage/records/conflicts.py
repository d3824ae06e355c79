"""Conflicts: a study whose images disagree (a duplicate with other content, an instance of it refused)
takes the conservative path until an admin has checked it. The instances themselves are in ``store``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.records import store
from triage.records.store import ReceivedInstance
from triage.records.tables import Study


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
            session, actor=f"dicom:{sender[0]}", action="study.instance_refused", source=sender[1],
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
    store.audit(
        session,
        actor=actor,
        action="conflict.resolved",
        source=source,
        now=now,
        study_ids=[study.id],
        detail=reason,
    )
