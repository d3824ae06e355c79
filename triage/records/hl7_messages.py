"""The HL7 results' bookkeeping: which final state changes still need a message, the messages due,
and what came of each try (acknowledged, retried with backoff, or failed for good: visible, audited,
the study left as it is, since a message only reports what already acts or the conservative path).

The sender reads the state changes behind a cursor. On PostgreSQL a transaction that commits late
can carry a lower id than one already read, so each pass reads ``OVERLAP`` ids behind the cursor
again; a change already messaged is skipped (its message's unique ``state_change_id``).
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from triage.outcomes import BreastOutcome, FractureOutcome, Verdict
from triage.records.audit_actions import AuditAction
from triage.records.store import TRIAGE, audit
from triage.records.tables import (
    Delivery,
    DeliveryState,
    Hl7Cursor,
    Hl7Message,
    Result,
    StateChange,
    Study,
    StudyState,
    StudyVersion,
)
from triage.records.verdicts import acting_outcome, acting_verdict

REPORTABLE = (StudyState.REPORTED, StudyState.NOT_ANALYSED)
OVERLAP = 1000
_MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True)
class Change:
    """A final state change to report, with what the message is built from."""

    change: StateChange
    study: Study
    version: StudyVersion
    result: Result | None
    reporting: bool  # the version's results went to a PACS (a permissive verdict waits for it)
    sr_instance_uid: str  # the SR the PACS acknowledged, when reporting REPORTED
    correction: bool  # the RIS already has (or is being sent) a result for this study

    @property
    def acting(self) -> FractureOutcome | BreastOutcome | None:
        """The outcome that acted in the reported state (None: the conservative path)."""
        outcome = self.result.outcome if self.result else None
        return acting_outcome(self.change.state, outcome, self.reporting)

    @property
    def verdict(self) -> Verdict:
        """The verdict that acted in the reported state, as ``triage.records.verdicts`` decides."""
        outcome = self.result.outcome if self.result else None
        return acting_verdict(self.change.state, outcome, self.reporting)


def changes_to_report(
    session: Session, cursor_name: str, pipelines: Collection[str] = (), limit: int = 100
) -> tuple[list[StateChange], int]:
    """The next final state changes after the cursor with no message yet, oldest first (only of
    ``pipelines`` when given), and how far the cursor may move: past every change read when fewer
    than ``limit`` came back. Each is ``described`` just before its message is built, so that it
    sees the messages queued before it in the same pass. A cursor seen for the first time starts at
    the newest change: HL7 reports from when it was configured."""
    newest = session.scalar(select(func.max(StateChange.id))) or 0
    cursor = session.get(Hl7Cursor, cursor_name)
    if cursor is None:
        session.add(Hl7Cursor(name=cursor_name, since_change_id=newest, last_change_id=newest))
        return [], newest
    after = max(cursor.last_change_id - OVERLAP, cursor.since_change_id)
    messaged = exists().where(Hl7Message.state_change_id == StateChange.id)
    query = select(StateChange).where(
        StateChange.id > after, StateChange.id <= newest, StateChange.state.in_(REPORTABLE)
    )
    if pipelines:
        query = query.join(StudyVersion, StudyVersion.id == StateChange.version_id).where(
            StudyVersion.pipeline.in_(list(pipelines))
        )
    rows = session.scalars(query.where(~messaged).order_by(StateChange.id).limit(limit)).all()
    reached = rows[-1].id if len(rows) == limit else newest
    return list(rows), reached


def described(session: Session, change: StateChange) -> Change:
    """What a message about ``change`` is built from."""
    version = session.get_one(StudyVersion, change.version_id)
    study = session.get_one(Study, version.study_id)
    result = session.scalar(select(Result).where(Result.version_id == version.id))
    reporting = session.scalar(select(exists().where(Delivery.version_id == version.id)))
    sr = session.scalar(
        select(Delivery.sop_instance_uid).where(
            Delivery.version_id == version.id,
            Delivery.kind == "sr",
            Delivery.state == DeliveryState.DELIVERED,
        )
    )
    earlier = session.scalar(
        select(exists().where(Hl7Message.study_id == study.id, Hl7Message.state != DeliveryState.FAILED))
    )
    sr_uid = (sr or "") if change.state == StudyState.REPORTED else ""
    return Change(change, study, version, result, bool(reporting), sr_uid, bool(earlier))


def add_message(
    session: Session, change: Change, control_id: str, message: str, now: datetime, failed: str = ""
) -> None:
    """Queue one message; ``failed`` records one that could not even be built (FAILED, audited)."""
    session.add(
        Hl7Message(
            version_id=change.version.id,
            study_id=change.study.id,
            state_change_id=change.change.id,
            control_id=control_id,
            result_status="C" if change.correction else "P",
            message=message,
            state=DeliveryState.FAILED if failed else DeliveryState.PENDING,
            last_error=failed,
            next_attempt_at=now,
            created_at=now,
        )
    )
    if failed:
        audit(
            session, actor=TRIAGE, action=AuditAction.DELIVERY_FAILED, source=TRIAGE, now=now,
            study_ids=[change.study.id], detail=f"HL7 ORU^R01 {control_id} {failed}",
        )  # fmt: skip


def move_cursor(session: Session, cursor_name: str, last_change_id: int, now: datetime) -> None:
    """The cursor never moves back; it is read ``OVERLAP`` ids behind all the same."""
    cursor = session.get_one(Hl7Cursor, cursor_name)
    cursor.last_change_id, cursor.updated_at = max(cursor.last_change_id, last_change_id), now


def due_messages(session: Session, now: datetime, limit: int = 50) -> list[Hl7Message]:
    """Messages due, oldest first; one waits while an earlier message about its study is pending,
    so the RIS never gets a correction before what it corrects."""
    earlier = aliased(Hl7Message)
    waiting = exists().where(
        and_(
            earlier.study_id == Hl7Message.study_id,
            earlier.id < Hl7Message.id,
            earlier.state == DeliveryState.PENDING,
        )
    )
    return list(
        session.scalars(
            select(Hl7Message)
            .where(Hl7Message.state == DeliveryState.PENDING, Hl7Message.next_attempt_at <= now)
            .where(~waiting)
            .order_by(Hl7Message.id)
            .limit(limit)
        )
    )


def record_answer(
    session: Session,
    message_id: int,
    code: str,
    error: str,
    now: datetime,
    bounds: tuple[int, float],
) -> None:
    """Record one try: AA (or CA) delivers; anything else is retried with backoff until
    ``bounds`` (tries, seconds since queued) run out, then the message FAILS, audited."""
    max_attempts, deadline_seconds = bounds
    message = session.get_one(Hl7Message, message_id)
    message.attempts += 1
    message.ack_code = code
    if code in ("AA", "CA"):
        message.state, message.delivered_at, message.last_error = DeliveryState.DELIVERED, now, ""
        _audit(session, message, AuditAction.DELIVERY_ACKNOWLEDGED, "acknowledged (AA) by the RIS", now)
        return
    message.last_error = error
    expired = now >= message.created_at + timedelta(seconds=deadline_seconds)
    if not expired and message.attempts < max_attempts:
        backoff = min(_MAX_BACKOFF_SECONDS, 2.0**message.attempts) * random.uniform(0.5, 1.5)  # noqa: S311
        message.next_attempt_at = now + timedelta(seconds=backoff)
        return
    message.state = DeliveryState.FAILED
    why = f"not acknowledged by the RIS after {message.attempts} attempt(s): {error}"
    _audit(session, message, AuditAction.DELIVERY_FAILED, why, now)


def _audit(session: Session, message: Hl7Message, action: AuditAction, what: str, now: datetime) -> None:
    audit(
        session, actor=TRIAGE, action=action, source=TRIAGE, now=now, study_ids=[message.study_id],
        detail=f"HL7 ORU^R01 {message.control_id} ({message.result_status}) {what}",
    )  # fmt: skip
