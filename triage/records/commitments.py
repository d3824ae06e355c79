"""Storage commitment (PS3.4 Annex J, push model): a version is REPORTED only once the PACS has
committed every result object it acknowledged, where the PACS is set to commit.

After the last C-STORE acknowledgement a request is queued (``queue_commitment``); the deliverer
sends it as N-ACTION and the PACS answers later with an N-EVENT-REPORT, usually on an association
of its own to the listener (``record_report``). Objects the PACS reports as failed are sent again
with the same UIDs, and committed again once acknowledged; a report that does not come within the
timeout is asked for again with a new request. Past ``max_requests`` requests for a version, or
``max_attempts`` N-ACTION tries of one, the version's delivery fails for good: the study takes the
conservative path and what the PACS holds of it is rejected, as when a C-STORE fails for good.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydicom.uid import generate_uid
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from triage.records.audit_actions import AuditAction
from triage.records.store import TRIAGE, audit, transition
from triage.records.tables import (
    Commitment,
    CommitmentState,
    Delivery,
    DeliveryState,
    StudyState,
    StudyVersion,
)
from triage.records.withdrawals import acknowledged_objects, queue_rejection

if TYPE_CHECKING:
    from triage.settings import Settings

_MAX_BACKOFF_SECONDS = 300.0
OPEN = (CommitmentState.PENDING, CommitmentState.REQUESTED)


@dataclass(frozen=True)
class Bounds:
    max_requests: int  # requests per version (each new one after a failure report or a timeout)
    max_attempts: int  # N-ACTION tries of one request
    report_timeout_seconds: float


def queue_commitment(session: Session, version_id: int, now: datetime) -> None:
    """Ask the PACS to commit the version's acknowledged objects (a new transaction each time)."""
    session.add(
        Commitment(
            version_id=version_id,
            transaction_uid=str(generate_uid()),
            next_attempt_at=now,
            created_at=now,
        )
    )


def due_requests(session: Session, now: datetime, limit: int = 20) -> list[Commitment]:
    return list(
        session.scalars(
            select(Commitment)
            .where(Commitment.state == CommitmentState.PENDING, Commitment.next_attempt_at <= now)
            .order_by(Commitment.id)
            .limit(limit)
        )
    )


def record_request(
    session: Session, commitment_id: int, accepted: bool, detail: str, now: datetime, bounds: Bounds
) -> None:
    """What the N-ACTION came to: the report is awaited, or the request is tried again later."""
    # Locked, as the report's handler locks it: a report may come on another thread meanwhile.
    commitment = session.get_one(Commitment, commitment_id, with_for_update=True)
    if commitment.state != CommitmentState.PENDING:
        return  # the report came back before its request was recorded
    commitment.attempts += 1
    if accepted:
        commitment.state = CommitmentState.REQUESTED
        commitment.report_due_at = now + timedelta(seconds=bounds.report_timeout_seconds)
        return
    commitment.detail = detail
    if commitment.attempts < bounds.max_attempts:
        backoff = min(_MAX_BACKOFF_SECONDS, 2.0**commitment.attempts) * random.uniform(0.5, 1.5)  # noqa: S311
        commitment.next_attempt_at = now + timedelta(seconds=backoff)
        return
    _fail(
        session,
        commitment,
        f"storage commitment not requested after {commitment.attempts} tries: {detail}",
        now,
    )


def expire_overdue(session: Session, now: datetime, bounds: Bounds) -> int:
    """Requests whose report did not come in time: asked again, or failed past the bounds. Requests
    of a version that no longer acts (withdrawn meanwhile) are closed: nothing is asked again."""
    stale = session.scalars(
        select(Commitment)
        .join(StudyVersion, StudyVersion.id == Commitment.version_id)
        .where(Commitment.state.in_(OPEN), StudyVersion.state != StudyState.ANALYSED)
    ).all()
    for commitment in stale:
        _close(commitment, "its version no longer waits for the PACS; nothing asked again", now)
    overdue = session.scalars(
        select(Commitment).where(
            Commitment.state == CommitmentState.REQUESTED, Commitment.report_due_at < now
        )
    ).all()
    for commitment in overdue:
        why = f"no storage commitment report within {bounds.report_timeout_seconds:g} s"
        _retry(session, commitment, why, now, bounds)
    return len(overdue)


def record_report(
    session: Session,
    transaction_uid: str,
    committed: Collection[str],
    failed: dict[str, int],
    now: datetime,
    bounds: Bounds,
) -> bool:
    """The PACS's N-EVENT-REPORT: ``committed`` SOP Instance UIDs and ``failed`` ones with their
    Failure Reason. Returns False for a transaction triage does not know or has closed."""
    commitment = session.scalar(
        select(Commitment).where(Commitment.transaction_uid == transaction_uid).with_for_update()
    )
    if commitment is None or commitment.state not in OPEN:
        return False
    objects = acknowledged_objects(session, commitment.version_id)
    missing = [d for d in objects if d.sop_instance_uid not in committed or d.sop_instance_uid in failed]
    study_id = session.scalar(select(StudyVersion.study_id).where(StudyVersion.id == commitment.version_id))
    state = session.scalar(select(StudyVersion.state).where(StudyVersion.id == commitment.version_id))
    if missing and state != StudyState.ANALYSED:  # withdrawn meanwhile: its objects are not sent again
        _close(commitment, f"{len(missing)} object(s) not committed; the version no longer acts", now)
        return True
    if not missing:
        commitment.state, commitment.settled_at = CommitmentState.COMMITTED, now
        audit(
            session, actor=TRIAGE, action=AuditAction.DELIVERY_COMMITTED, source=TRIAGE, now=now,
            study_ids=[study_id], detail=f"{len(objects)} object(s) committed by the PACS",
        )  # fmt: skip
        reason = "results acknowledged and committed by the PACS (storage commitment)"
        transition(session, commitment.version_id, StudyState.ANALYSED, StudyState.REPORTED, now, reason)
        return True
    for delivery in missing:  # sent again, with the same UIDs, then committed again
        failure = failed.get(delivery.sop_instance_uid)
        why = f"failure reason 0x{failure:04X}" if failure is not None else "not in the report"
        delivery.state, delivery.next_attempt_at = DeliveryState.PENDING, now
        delivery.last_error = f"not committed by the PACS ({why}); sent again"
    _retry(
        session, commitment, f"{len(missing)} object(s) not committed; sent again", now, bounds, queue=False
    )
    return True


def _close(commitment: Commitment, why: str, now: datetime) -> None:
    commitment.state, commitment.detail, commitment.settled_at = CommitmentState.RETRIED, why, now


def _retry(
    session: Session, commitment: Commitment, why: str, now: datetime, bounds: Bounds, queue: bool = True
) -> None:
    requests = session.scalar(select(func.count()).where(Commitment.version_id == commitment.version_id))
    if (requests or 0) >= bounds.max_requests:
        _fail(session, commitment, f"{why}, after {requests} storage commitment request(s)", now)
        return
    _close(commitment, why, now)
    if queue:
        queue_commitment(session, commitment.version_id, now)


def _fail(session: Session, commitment: Commitment, why: str, now: datetime) -> None:
    """The version's objects could not be committed: its delivery fails for good, conservatively (the
    study is read as if triage had not seen it, and what the PACS holds of it is rejected there)."""
    commitment.state, commitment.detail, commitment.settled_at = CommitmentState.FAILED, why, now
    session.execute(
        update(Delivery)
        .where(Delivery.version_id == commitment.version_id, Delivery.state == DeliveryState.PENDING)
        .values(state=DeliveryState.FAILED, last_error=f"not sent: {why}")
        .execution_options(synchronize_session=False)
    )
    version = session.get_one(StudyVersion, commitment.version_id)
    audit(
        session, actor=TRIAGE, action=AuditAction.DELIVERY_FAILED, source=TRIAGE, now=now,
        study_ids=[version.study_id], detail=f"storage commitment: {why}",
    )  # fmt: skip
    transition(
        session, version.id, StudyState.ANALYSED, StudyState.NOT_ANALYSED, now,
        f"results not committed by the PACS ({why}); read as if triage had not seen the study",
    )  # fmt: skip
    session.refresh(version)
    queue_rejection(session, version.id, f"its storage commitment failed ({why})", now)


def bounds_of(settings: Settings) -> Bounds | None:
    """Storage commitment's bounds where the PACS is set to commit (None: REPORTED on C-STORE)."""
    if not settings.pacs_storage_commitment:
        return None
    return Bounds(
        settings.storage_commitment_max_requests,
        settings.delivery_max_attempts,
        settings.storage_commitment_timeout_seconds,
    )
