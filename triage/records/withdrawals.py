"""Withdrawing a verdict that may already act: the version goes back to the conservative path, what
it has not yet sent is not sent, and what reached the PACS is superseded and rejected.

A verdict is withdrawn when a later version of its study opens (images arrived after it was
judged, so it covered part of the study), when an admin retracts it, or when its delivery fails for
good after part of it was acknowledged. The objects themselves (a NOT ANALYSED SR whose Predecessor
Documents Sequence names the withdrawn SR, and an IHE IOCM rejection note, a Key Object Selection
titled "Rejected for Patient Safety Reasons") are built by a worker from the ``triage.withdraw_result``
task and delivered like any result.

The PACS may acknowledge an object after its version was withdrawn (the withdrawal landed while the
object was on the wire), so a rejection note is made per set of acknowledged objects: its SOP
Instance UID is derived from that set (``rejection_uid``), and a set no note covers yet is queued
again, by the acknowledgement itself and by the leader's reconciling pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydicom.uid import generate_uid
from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session, aliased

from triage import messages
from triage.records.audit_actions import AuditAction
from triage.records.store import TRIAGE, audit, enqueue, transition
from triage.records.tables import Delivery, DeliveryState, StateChange, StudyState, StudyVersion

WITHDRAWABLE = (StudyState.ANALYSED, StudyState.REPORTED)
WITHDRAWAL_KINDS = ("withdrawal-sr", "kos")
LIVE = WITHDRAWABLE  # a version whose verdict acts (or will once it is delivered)


@dataclass(frozen=True)
class Withdrawn:
    """A verdict withdrawn: which version, and whether the PACS had objects to supersede."""

    version_number: int
    superseded_at_pacs: bool


def rejection_uid(study_instance_uid: str, version: int, rejected: list[str]) -> str:
    """The SOP Instance UID of the rejection note for exactly these acknowledged objects: the same
    set gives the same note (a re-run changes nothing), a larger set a new one."""
    return str(generate_uid(entropy_srcs=[study_instance_uid, str(version), "kos", *sorted(rejected)]))


def acknowledged_objects(session: Session, version_id: int) -> list[Delivery]:
    """The version's result objects the PACS holds (its own withdrawal objects left out)."""
    return list(
        session.scalars(
            select(Delivery)
            .where(Delivery.version_id == version_id, Delivery.state == DeliveryState.DELIVERED)
            .where(Delivery.kind.not_in(WITHDRAWAL_KINDS))
            .order_by(Delivery.id)
        )
    )


def unrejected(session: Session, version: StudyVersion) -> list[Delivery]:
    """What the PACS holds of a version that no rejection note covers yet ([]: nothing to do)."""
    held = acknowledged_objects(session, version.id)
    if not held:
        return []
    uid = rejection_uid(version.study.study_instance_uid, version.number, [d.sop_instance_uid for d in held])
    return [] if session.scalar(select(Delivery.id).where(Delivery.sop_instance_uid == uid)) else held


def _had_a_verdict(version_id: object) -> ColumnElement[bool]:
    """The version was ANALYSED once: what it sent carried a verdict. A version that went NOT ANALYSED
    without one sent only conservative objects, which stay."""
    return exists().where(StateChange.version_id == version_id, StateChange.state == StudyState.ANALYSED)


def queue_rejection(session: Session, version_id: int, reason: str, now: datetime) -> int:
    """Queue the superseding SR and rejection note for what the PACS holds of a version that no longer
    acts; returns how many objects the note will reject (0: nothing held, or already covered)."""
    version = session.get_one(StudyVersion, version_id)
    if version.state in LIVE or not session.scalar(select(_had_a_verdict(version_id))):
        return 0
    held = unrejected(session, version)
    if held:
        payload = messages.WithdrawResult(study_version_id=version_id, reason=reason)
        enqueue(session, messages.WITHDRAW_RESULT, payload.model_dump(mode="json"), now)
    return len(held)


def queue_unrejected(session: Session, now: datetime) -> int:
    """The leader's safety net: queue a rejection for every version that no longer acts and whose
    acknowledged objects no rejection note made after them covers (a withdrawal task that failed, or
    was lost with its worker). Returns how many versions were queued."""
    kos = aliased(Delivery)
    covered = exists().where(
        kos.version_id == Delivery.version_id, kos.kind == "kos", kos.created_at >= Delivery.delivered_at
    )
    candidates = session.scalars(
        select(StudyVersion.id)
        .join(Delivery, Delivery.version_id == StudyVersion.id)
        .where(StudyVersion.state.not_in(LIVE), Delivery.state == DeliveryState.DELIVERED)
        .where(Delivery.kind.not_in(WITHDRAWAL_KINDS), ~covered, _had_a_verdict(StudyVersion.id))
        .distinct()
    ).all()
    reason = "objects the PACS holds of a withdrawn verdict were not yet rejected"
    return sum(queue_rejection(session, version_id, reason, now) > 0 for version_id in candidates)


def withdraw(
    session: Session, version_id: int, reason: str, now: datetime, actor: str = TRIAGE, source: str = ""
) -> Withdrawn | None:
    """Withdraw a version's verdict; None when it had none that acts (already conservative)."""
    version = session.get_one(StudyVersion, version_id)
    if not transition(
        session, version_id, WITHDRAWABLE, StudyState.NOT_ANALYSED, now, f"result withdrawn: {reason}"
    ):
        return None
    for delivery in session.scalars(select(Delivery).where(Delivery.version_id == version_id)):
        if delivery.state == DeliveryState.PENDING:
            delivery.state, delivery.last_error = DeliveryState.FAILED, f"not sent: withdrawn ({reason})"
    session.refresh(version)
    held = queue_rejection(session, version_id, reason, now)
    # What is queued, not yet what the PACS did: its acknowledgements are audited when they come.
    queued = (
        f"; a superseding SR and a rejection note of {held} object(s) queued for the PACS" if held else ""
    )
    audit(
        session,
        actor=actor,
        action=AuditAction.RESULT_WITHDRAWN,
        source=source or actor,
        now=now,
        study_ids=[version.study_id],
        detail=f"version {version.number}: {reason}{queued}",
    )
    return Withdrawn(version.number, held > 0)


def retract(
    session: Session, study_id: int, reason: str, now: datetime, actor: str, source: str
) -> Withdrawn | None:
    """An admin withdraws the verdict that acts on a study (its latest ANALYSED or REPORTED
    version); None when none acts. The study is read as if triage had not seen it."""
    version = session.scalars(
        select(StudyVersion)
        .where(StudyVersion.study_id == study_id, StudyVersion.state.in_(WITHDRAWABLE))
        .order_by(StudyVersion.number.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if version is None:
        return None
    return withdraw(session, version.id, f"retracted by {actor}: {reason}", now, actor, source)


def supersede_older_versions(session: Session, now: datetime) -> int:
    """Withdraw each acting verdict of a study that has a later version; returns how many."""
    later = aliased(StudyVersion)
    older = session.scalars(
        select(StudyVersion)
        .where(StudyVersion.state.in_(WITHDRAWABLE))
        .where(
            select(later.id)
            .where(later.study_id == StudyVersion.study_id, later.number > StudyVersion.number)
            .exists()
        )
        .with_for_update()
    ).all()
    count = 0
    for version in older:
        reason = f"images arrived after it was judged; version {version.number + 1} replaces it"
        count += withdraw(session, version.id, reason, now) is not None
    return count
