"""What came of each try to store a result object at the PACS: acknowledged (the study is REPORTED once
all its objects are), retried with backoff, or failed for good (the study goes conservative).

The study's state moves through ``store.transition``, as everywhere.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.records.audit_actions import AuditAction
from triage.records.commitments import queue_commitment
from triage.records.store import TRIAGE, audit, transition
from triage.records.tables import Delivery, DeliveryState, StudyState, StudyVersion
from triage.records.withdrawals import LIVE, WITHDRAWAL_KINDS, queue_rejection

_MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True)
class Attempt:
    """What one try to store a delivery's object at the PACS came to."""

    ok: bool
    error: str = ""
    permanent: bool = False  # the PACS will never take it as it is (a SOP class it refuses)
    sent_key: str = ""  # the file it acknowledged (the object's, or its alternate's)


def record_delivery(
    session: Session,
    delivery_id: int,
    attempt: Attempt,
    now: datetime,
    max_attempts: int,
    deadline_seconds: float,
    commitment: bool = False,
) -> None:
    """Record one attempt. On the version's last acknowledgement the study is REPORTED (with
    ``commitment``, once the PACS commits them: a storage commitment request is queued); an object
    acknowledged after its version stopped acting (withdrawn while it was on the wire) is rejected at
    the PACS. A delivery fails for good after ``max_attempts`` tries, after ``deadline_seconds`` since
    it was queued, or at once when the refusal is permanent; then the version's other objects are not
    sent, an ANALYSED study goes back to the conservative path, and what the PACS already holds of it
    is rejected. A withdrawal object is retried until the PACS takes it, unless refused for good: a
    verdict left at the PACS is worse than a late rejection."""
    delivery = session.get_one(Delivery, delivery_id)
    delivery.attempts += 1
    if attempt.ok:
        delivery.state, delivery.delivered_at, delivery.last_error = DeliveryState.DELIVERED, now, ""
        delivery.sent_storage_key = attempt.sent_key
        as_alternate = (
            bool(delivery.alternate_storage_key) and attempt.sent_key == delivery.alternate_storage_key
        )
        alternate = " (as its alternate SOP class)" if as_alternate else ""
        audit(
            session, actor=TRIAGE, action=AuditAction.DELIVERY_ACKNOWLEDGED, source=TRIAGE, now=now,
            study_ids=[session.get_one(StudyVersion, delivery.version_id).study_id],
            detail=f"{delivery.kind} {delivery.sop_instance_uid} acknowledged by the PACS after "
            f"{delivery.attempts} attempt(s){alternate}",
        )  # fmt: skip
        remaining = session.scalar(
            select(func.count()).where(
                Delivery.version_id == delivery.version_id, Delivery.state != DeliveryState.DELIVERED
            )
        )
        if remaining == 0 and commitment:
            state = session.scalar(select(StudyVersion.state).where(StudyVersion.id == delivery.version_id))
            if state == StudyState.ANALYSED:
                queue_commitment(session, delivery.version_id, now)
        elif remaining == 0:
            reason = "results acknowledged by the PACS"
            transition(session, delivery.version_id, StudyState.ANALYSED, StudyState.REPORTED, now, reason)
        _reject_if_withdrawn(session, delivery, now)
        return
    delivery.last_error = attempt.error
    expired = now >= delivery.created_at + timedelta(seconds=deadline_seconds)
    withdrawal = delivery.kind in WITHDRAWAL_KINDS
    if not attempt.permanent and (withdrawal or not (expired or delivery.attempts >= max_attempts)):
        backoff = min(_MAX_BACKOFF_SECONDS, 2.0**delivery.attempts) * random.uniform(0.5, 1.5)  # noqa: S311
        delivery.next_attempt_at = now + timedelta(seconds=backoff)
        return
    why = "refused for good" if attempt.permanent else f"not accepted after {delivery.attempts} attempts"
    if withdrawal:  # refused for good: visible, and the audit says the PACS may still show the verdict
        delivery.state = DeliveryState.FAILED
        _audit_failure(
            session, delivery, f"{why}: {attempt.error}; the withdrawn verdict may still show", now
        )
        return
    _fail_version_deliveries(session, delivery, f"{why}: {attempt.error}", now)


def fail_overdue(session: Session, now: datetime, deadline_seconds: float) -> int:
    """Fail every result object still waiting past its deadline that no attempt has judged: one held
    back behind a sibling, or one no process tries (no PACS where the worker had one). Withdrawal
    objects are left to their retries. Returns how many failed (their siblings, not sent, aside)."""
    overdue = session.scalars(
        select(Delivery)
        .where(Delivery.state == DeliveryState.PENDING, Delivery.kind.not_in(WITHDRAWAL_KINDS))
        .where(Delivery.created_at < now - timedelta(seconds=deadline_seconds))
        .order_by(Delivery.id)
    ).all()
    failed = 0
    for delivery in overdue:
        if delivery.state == DeliveryState.PENDING:  # a sibling's failure may have settled it
            why = f"not acknowledged within the {deadline_seconds:g} s delivery deadline"
            _fail_version_deliveries(session, delivery, why, now)
            failed += 1
    return failed


def _reject_if_withdrawn(session: Session, delivery: Delivery, now: datetime) -> None:
    """An object the PACS took after its version stopped acting: queue its rejection there."""
    if delivery.kind in WITHDRAWAL_KINDS:
        return
    version = session.get_one(StudyVersion, delivery.version_id)
    session.refresh(version)
    if version.state not in LIVE:
        queue_rejection(
            session, version.id, f"acknowledged after the verdict was withdrawn ({version.reason})", now
        )


def _audit_failure(session: Session, delivery: Delivery, why: str, now: datetime) -> None:
    audit(
        session,
        actor=TRIAGE,
        action=AuditAction.DELIVERY_FAILED,
        source=TRIAGE,
        now=now,
        study_ids=[session.get_one(StudyVersion, delivery.version_id).study_id],
        detail=f"{delivery.kind} {delivery.sop_instance_uid} {why}",
    )


def _fail_version_deliveries(session: Session, delivery: Delivery, why: str, now: datetime) -> None:
    """A delivery failed for good: the version's objects still waiting are not sent (a summary image
    that failed must never leave its SR to act alone), the study takes the conservative path, and
    what the PACS already took of the version (the summary image, say) is rejected there."""
    delivery.state = DeliveryState.FAILED
    for sibling in session.scalars(
        select(Delivery).where(
            Delivery.version_id == delivery.version_id, Delivery.state == DeliveryState.PENDING
        )
    ):
        sibling.state, sibling.last_error = DeliveryState.FAILED, f"not sent: the {delivery.kind} failed"
    _audit_failure(session, delivery, why, now)
    transition(
        session, delivery.version_id, StudyState.ANALYSED, StudyState.NOT_ANALYSED, now,
        f"results could not be delivered to the PACS ({delivery.kind} {why}); read as if triage had not seen "
        "the study",
    )  # fmt: skip
    session.refresh(session.get_one(StudyVersion, delivery.version_id))
    queue_rejection(session, delivery.version_id, f"its delivery failed ({delivery.kind} {why})", now)
