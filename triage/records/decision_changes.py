"""Changes to what a model may decide, made by two admins after a what-if on the site's own recent
studies with outcomes: a decision enabled for a model version against its card's evidence (an
override, ``triage.records.overrides``: the rule-out, single reading or the boxes), or a new
single-reading threshold (the Capital Region of Denmark went from single reading at score 5 to 7).
One admin proposes, with a reason and the time it takes effect; the what-if is computed then and
kept; a second admin approves; both are audited. This is the only way to turn a decision on against
the evidence: at the command line (``triage decisions propose`` / ``approve``) as on the page.
Turning one off, or ending an override, moves to the conservative side and takes one admin.

The what-if, over the analysed studies of the last ``live_evidence_window_days``:
- rule-out: the share of trauma studies the model put below DOUBT (cleared), the reads saved per
  1,000 studies, and the fractures among studies with an outcome that would have been cleared;
- single reading at the threshold: the share of screens single-read, the reads saved per 1,000
  screens against double reading, and the cancers among screens with an outcome that would have gone
  to one reader;
- boxes: the share of trauma studies that would show a box, and the share of the studies read as
  fractured that would;
each share with its Wilson 95 % interval and count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.evidence_settings import EvidenceSettings
from triage.outcomes import Decision, FractureOutcome, FractureState
from triage.pipelines import Pipeline
from triage.records import overrides, store
from triage.records.audit_actions import AuditAction
from triage.records.performance import latest_readings, share
from triage.records.status_tables import DecisionChange
from triage.records.tables import FeedbackKind, Result

# The decisions a change can enable, per pipeline. Single reading may name no model: then it moves the
# threshold alone; naming one also enables single reading for it against its evidence.
CHANGEABLE = (
    (Pipeline.FRACTURE, Decision.RULE_OUT),
    (Pipeline.FRACTURE, Decision.BOXES),
    (Pipeline.BREAST, Decision.SINGLE_READ),
)


def what_if(
    session: Session,
    pipeline: Pipeline,
    decision: Decision,
    single_read_max_score: int | None,
    settings: EvidenceSettings,
    now: datetime,
) -> dict[str, object]:
    """What the change would have done to the site's own recent studies (see the module's words)."""
    since = now - timedelta(days=settings.live_evidence_window_days)
    results = list(
        session.scalars(
            select(Result).where(
                Result.pipeline == pipeline, Result.analysed.is_(True), Result.created_at >= since
            )
        )
    )
    # Each result's latest reading (no IN list of the window's results: a region's six months pass
    # PostgreSQL's bind-parameter limit).
    kind = FeedbackKind.CANCER if decision is Decision.SINGLE_READ else FeedbackKind.FRACTURE
    positive = {result_id for result_id, value in latest_readings(session, kind, since).items() if value}
    if decision is Decision.BOXES:
        boxed = {
            r.id
            for r in results
            if isinstance(r.outcome, FractureOutcome) and any(i.boxes for i in r.outcome.images)
        }
        fractured = [r.id for r in results if r.id in positive]
        return {
            "studies": len(results), "window_days": settings.live_evidence_window_days,
            "share_with_boxes": share(len(boxed), len(results)),
            "fractures_with_boxes": share(len(boxed.intersection(fractured)), len(fractured)),
        }  # fmt: skip
    if decision is Decision.RULE_OUT:
        cleared = {
            r.id
            for r in results
            if isinstance(r.outcome, FractureOutcome) and r.outcome.state is FractureState.NO_FRACTURE
        }
        fractured = [r.id for r in results if r.id in positive]
        saved = round(1000 * len(cleared) / len(results)) if results else 0
        return {
            "studies": len(results), "window_days": settings.live_evidence_window_days,
            "share_cleared": share(len(cleared), len(results)), "reads_saved_per_1000": saved,
            "fractures_cleared": share(len(cleared.intersection(fractured)), len(fractured)),
        }  # fmt: skip
    threshold = single_read_max_score if single_read_max_score is not None else 0
    single = {r.id for r in results if r.score is not None and r.score <= threshold}
    cancers = [r.id for r in results if r.id in positive]
    saved = round(1000 * len(single) / len(results)) if results else 0
    return {
        "screens": len(results), "window_days": settings.live_evidence_window_days,
        "single_read_max_score": threshold, "share_single_read": share(len(single), len(results)),
        "reads_saved_per_1000": saved,
        "cancers_single_read": share(len(single.intersection(cancers)), len(cancers)),
    }  # fmt: skip


def propose(
    session: Session,
    *,
    pipeline: Pipeline,
    decision: Decision,
    model: tuple[str, str] | None,
    single_read_max_score: int | None,
    effective_at: datetime,
    reason: str,
    actor: str,
    settings: EvidenceSettings,
    now: datetime,
    source: str,
) -> DecisionChange:
    """Record a proposal and its what-if (``source``: "admin" for the page and API, "cli").

    Raises:
        ValueError: the change does not fit the pipeline, or lacks its model, threshold or reason.
    """
    if len(reason.strip()) < 3:
        raise ValueError("a change needs a reason")
    if (pipeline, decision) not in CHANGEABLE:
        raise ValueError(
            f"{decision.label} is not a decision of the {pipeline} pipeline that a change can enable"
        )
    if decision is not Decision.SINGLE_READ and model is None:
        raise ValueError(f"enabling the {decision.label} names the model version it is enabled for")
    if decision is Decision.SINGLE_READ and (
        single_read_max_score is None or not 0 <= single_read_max_score <= 10
    ):
        raise ValueError("single reading takes a threshold from 0 (none) to 10")
    name, version = model or ("", "")
    row = DecisionChange(
        pipeline=pipeline, decision=decision, model_name=name, model_version=version,
        single_read_max_score=single_read_max_score, effective_at=effective_at, reason=reason.strip(),
        what_if=what_if(session, pipeline, decision, single_read_max_score, settings, now),
        proposed_by=actor, proposed_at=now,
    )  # fmt: skip
    session.add(row)
    session.flush()
    store.audit(
        session, actor=actor, action=AuditAction.DECISION_CHANGE_PROPOSED, source=source, now=now,
        detail=f"change {row.id}: {describe(row)}, from {effective_at:%Y-%m-%d %H:%M} UTC: {row.reason}",
    )  # fmt: skip
    return row


def describe(row: DecisionChange) -> str:
    enabled = f"{Decision(row.decision).label} enabled for {row.model_name} {row.model_version}"
    if row.decision != Decision.SINGLE_READ:
        return enabled
    threshold = f"single reading at scores up to {row.single_read_max_score}"
    return f"{enabled}, {threshold}" if row.model_name else threshold


def approve(session: Session, change_id: int, actor: str, now: datetime, source: str) -> DecisionChange:
    """The second admin's approval: the change is in force from its stated time.

    Raises:
        LookupError: no such proposal.
        PermissionError: the approver proposed it (two admins are needed).
        ValueError: approved already.
    """
    row = session.get(DecisionChange, change_id)
    if row is None:
        raise LookupError(f"no decision change {change_id}")
    if row.approved_at is not None:
        raise ValueError(f"approved already by {row.approved_by}")
    if row.proposed_by == actor:
        raise PermissionError("a second admin must approve the change, not the one who proposed it")
    row.approved_by, row.approved_at = actor, now
    if row.model_name:
        overrides.enable(
            session, row.model_name, row.model_version, Decision(row.decision),
            f"decision change {row.id}, proposed by {row.proposed_by}, approved by {actor}: {row.reason}",
            actor, row.effective_at, source,
        )  # fmt: skip
    store.audit(
        session, actor=actor, action=AuditAction.DECISION_CHANGE_APPROVED, source=source, now=now,
        detail=f"change {row.id}: {describe(row)}, from {row.effective_at:%Y-%m-%d %H:%M} UTC",
    )  # fmt: skip
    return row


def single_read_threshold(session: Session, default: int, now: datetime) -> int:
    """The single-reading threshold in force: the latest approved change already in effect, else the
    setting."""
    found = session.scalar(
        select(DecisionChange.single_read_max_score)
        .where(
            DecisionChange.decision == Decision.SINGLE_READ,
            DecisionChange.approved_at.is_not(None),
            DecisionChange.effective_at <= now,
        )
        .order_by(DecisionChange.effective_at.desc(), DecisionChange.id.desc())
        .limit(1)
    )
    return default if found is None else int(found)


def listed(session: Session, limit: int = 100) -> list[DecisionChange]:
    return list(session.scalars(select(DecisionChange).order_by(DecisionChange.id.desc()).limit(limit)))
