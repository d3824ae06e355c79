"""Withdrawing a verdict that may already act: the version goes back to the conservative path, what
it has not yet sent is not sent, and what reached the PACS is superseded and rejected.

A verdict is withdrawn when a later version of its study opens (images arrived after it was
judged, so it covered part of the study), or when an admin retracts it. The objects themselves
(a NOT ANALYSED SR whose Predecessor Documents Sequence names the withdrawn SR, and an IHE IOCM
rejection note, a Key Object Selection titled "Rejected for Patient Safety Reasons") are built by
a worker from the ``triage.withdraw_result`` task and delivered like any result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from triage import messages
from triage.records.store import TRIAGE, audit, enqueue, transition
from triage.records.tables import Delivery, DeliveryState, StudyState, StudyVersion

WITHDRAWABLE = (StudyState.ANALYSED, StudyState.REPORTED)
WITHDRAWAL_KINDS = ("withdrawal-sr", "kos")


@dataclass(frozen=True)
class Withdrawn:
    """A verdict withdrawn: which version, and whether the PACS had objects to supersede."""

    version_number: int
    superseded_at_pacs: bool


def withdraw(
    session: Session, version_id: int, reason: str, now: datetime, actor: str = TRIAGE, source: str = ""
) -> Withdrawn | None:
    """Withdraw a version's verdict; None when it had none that acts (already conservative)."""
    version = session.get_one(StudyVersion, version_id)
    if not transition(
        session, version_id, WITHDRAWABLE, StudyState.NOT_ANALYSED, now, f"result withdrawn: {reason}"
    ):
        return None
    delivered = False
    for delivery in session.scalars(select(Delivery).where(Delivery.version_id == version_id)):
        if delivery.state == DeliveryState.PENDING:
            delivery.state, delivery.last_error = DeliveryState.FAILED, f"not sent: withdrawn ({reason})"
        delivered |= delivery.state == DeliveryState.DELIVERED
    if delivered:
        payload = messages.WithdrawResult(study_version_id=version_id, reason=reason)
        enqueue(session, messages.WITHDRAW_RESULT, payload.model_dump(mode="json"), now)
    audit(
        session,
        actor=actor,
        action="result.withdrawn",
        source=source or actor,
        now=now,
        study_ids=[version.study_id],
        detail=f"version {version.number}: {reason}" + ("; superseded at the PACS" if delivered else ""),
    )
    return Withdrawn(version.number, delivered)


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
