"""The Recall queue: patients an AI decision touched wrongly, found the moment an outcome arrives
(a reading on the page, or a result over HL7), each until a radiologist records that the patient was
contacted and what was done. Every step is audited; the notification goes out from the delivering
process (``delivery.notify``) until it reaches someone.

- CLEARED_FRACTURE: a fracture on a study whose acting verdict was NO FRACTURE (eligible for
  discharge).
- SINGLE_READ_CANCER: a cancer after a screen sent to one reader.
- LOW_SCORE_RECALL: a recall after a screen scored at or below the single-reading threshold then in
  force (whether or not single reading was on).
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.outcomes import BreastOutcome, Verdict
from triage.records import store
from triage.records.audit_actions import AuditAction
from triage.records.status_tables import Discrepancy
from triage.records.tables import Feedback, FeedbackKind, Result, Study, StudyVersion

MAX_NOTIFY_BACKOFF = timedelta(hours=1)


class DiscrepancyKind(enum.StrEnum):
    CLEARED_FRACTURE = "CLEARED_FRACTURE"
    SINGLE_READ_CANCER = "SINGLE_READ_CANCER"
    LOW_SCORE_RECALL = "LOW_SCORE_RECALL"

    @property
    def label(self) -> str:
        return {
            "CLEARED_FRACTURE": "fracture on a study cleared as NO FRACTURE",
            "SINGLE_READ_CANCER": "cancer after a screen sent to single reading",
            "LOW_SCORE_RECALL": "recall after a screen scored low",
        }[self.value]


def _kind(feedback: Feedback, verdict: str, result: Result | None) -> tuple[DiscrepancyKind, str] | None:
    if not feedback.value:
        return None
    if feedback.kind == FeedbackKind.FRACTURE and verdict == Verdict.NO_FRACTURE:
        return DiscrepancyKind.CLEARED_FRACTURE, "the study was cleared as NO FRACTURE"
    if feedback.kind == FeedbackKind.CANCER and verdict == Verdict.SINGLE_READ:
        return DiscrepancyKind.SINGLE_READ_CANCER, "the screen was sent to one reader"
    outcome = result.outcome if result is not None else None
    if (
        feedback.kind == FeedbackKind.RECALL
        and isinstance(outcome, BreastOutcome)
        and outcome.score is not None
    ):
        threshold = outcome.single_read_max_score or 0
        if outcome.score <= threshold:
            return (
                DiscrepancyKind.LOW_SCORE_RECALL,
                f"the screen scored {outcome.score} (single reading at <= {threshold})",
            )
    return None


def detect(session: Session, feedback: Feedback, now: datetime) -> Discrepancy | None:
    """The discrepancy an outcome shows, recorded once per study and kind; None when it shows none."""
    verdict = session.scalar(select(StudyVersion.verdict).where(StudyVersion.id == feedback.version_id)) or ""
    result = session.get(Result, feedback.result_id) if feedback.result_id is not None else None
    found = _kind(feedback, verdict, result)
    if found is None:
        return None
    kind, why = found
    existing = session.scalar(
        select(Discrepancy).where(Discrepancy.study_id == feedback.study_id, Discrepancy.kind == kind)
    )
    if existing is not None:
        return None
    row = Discrepancy(
        study_id=feedback.study_id, version_id=feedback.version_id, kind=kind, source=feedback.author,
        detail=f"{kind.label}: {why}; reported by {feedback.author}", found_at=now, notify_next_at=now,
        notify_attempts=0, notify_error="", contact_note="",
    )  # fmt: skip
    session.add(row)
    store.audit(
        session, actor="triage", action=AuditAction.DISCREPANCY_FOUND, source="outcomes", now=now,
        study_ids=[feedback.study_id], detail=row.detail,
    )  # fmt: skip
    return row


def listed(session: Session, include_closed: bool, limit: int) -> list[tuple[Discrepancy, Study]]:
    """Open discrepancies oldest first, then (when asked) closed ones newest first."""
    query = select(Discrepancy, Study).join(Study, Study.id == Discrepancy.study_id)
    found = list(
        session.execute(
            query.where(Discrepancy.closed_at.is_(None)).order_by(Discrepancy.id).limit(limit)
        ).tuples()
    )
    if include_closed and len(found) < limit:
        closed = query.where(Discrepancy.closed_at.is_not(None)).order_by(Discrepancy.id.desc())
        found += list(session.execute(closed.limit(limit - len(found))).tuples())
    return found


def close(session: Session, discrepancy_id: int, note: str, actor: str, now: datetime) -> Discrepancy:
    """Record that the patient was contacted and what was done; the discrepancy leaves the queue.

    Raises:
        LookupError: no such discrepancy.
        ValueError: already closed, or no note of the contact.
    """
    row = session.get(Discrepancy, discrepancy_id)
    if row is None:
        raise LookupError(f"no discrepancy {discrepancy_id}")
    if row.closed_at is not None:
        raise ValueError(f"closed already by {row.closed_by} on {row.closed_at:%Y-%m-%d %H:%M}")
    if len(note.strip()) < 3:
        raise ValueError("say how the patient was contacted and what was done")
    row.closed_at, row.closed_by, row.contact_note = now, actor, note.strip()
    store.audit(
        session, actor=actor, action=AuditAction.DISCREPANCY_CLOSED, source="worklist", now=now,
        study_ids=[row.study_id], detail=f"{row.kind}: {row.contact_note}"[:2000],
    )  # fmt: skip
    return row


def due(session: Session, now: datetime, limit: int = 50) -> list[Discrepancy]:
    """Discrepancies whose notification has not reached anyone yet and is due to be tried."""
    return list(
        session.scalars(
            select(Discrepancy)
            .where(Discrepancy.notified_at.is_(None), Discrepancy.notify_next_at <= now)
            .order_by(Discrepancy.id)
            .limit(limit)
        )
    )


def notified(session: Session, row: Discrepancy, error: str, now: datetime) -> None:
    """Record one try at notifying: done, or the error and when to try again (doubling, at most an
    hour: it never gives up)."""
    row.notify_attempts += 1
    if not error:
        row.notified_at, row.notify_error = now, ""
        store.audit(
            session, actor="triage", action=AuditAction.DISCREPANCY_NOTIFIED, source="notify", now=now,
            study_ids=[row.study_id], detail=f"discrepancy {row.id} ({row.kind})",
        )  # fmt: skip
        return
    row.notify_error = error[:2000]
    row.notify_next_at = now + min(
        timedelta(seconds=10 * 2 ** min(row.notify_attempts, 12)), MAX_NOTIFY_BACKOFF
    )
