"""Decisions enabled against a model's evidence: each with who, when and why, in force until revoked.
One is made only by an approved decision change (two admins, ``triage.records.decision_changes``);
one admin may end it. The evidence gate (``triage.evidence``) reads them for the model that makes a
result; every change is audited."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.outcomes import Decision
from triage.records import store
from triage.records.audit_actions import AuditAction
from triage.records.status_tables import DecisionOverride


def in_force(
    session: Session, model_name: str, model_version: str, now: datetime | None = None
) -> dict[Decision, str]:
    """The overrides in force for a model version (by ``now``, when given: one approved to take
    effect later is not yet): decision -> who enabled it, when and why."""
    query = (
        select(DecisionOverride)
        .where(
            DecisionOverride.model_name == model_name,
            DecisionOverride.model_version == model_version,
            DecisionOverride.revoked_at.is_(None),
        )
        .order_by(DecisionOverride.id)
    )
    rows = session.scalars(query if now is None else query.where(DecisionOverride.at <= now))
    return {
        Decision(
            row.decision
        ): f"enabled against the evidence by {row.actor} on {row.at:%Y-%m-%d}: {row.reason}"
        for row in rows
    }


def enable(
    session: Session,
    model_name: str,
    model_version: str,
    decision: Decision,
    reason: str,
    actor: str,
    now: datetime,
    source: str,
) -> None:
    """Enable ``decision`` for the model version against its evidence (a reason is required). Only an
    approved decision change calls this."""
    if not reason.strip():
        raise ValueError("an override needs a reason")
    revoke(session, model_name, model_version, decision, actor, now, source, audited=False)
    session.add(DecisionOverride(
        model_name=model_name, model_version=model_version, decision=decision, reason=reason.strip(),
        actor=actor, at=now,
    ))  # fmt: skip
    store.audit(
        session, actor=actor, action=AuditAction.DECISION_OVERRIDDEN, source=source, now=now,
        detail=f"{decision.label} enabled against the evidence for {model_name} {model_version}: {reason}",
    )  # fmt: skip


def revoke(
    session: Session,
    model_name: str,
    model_version: str,
    decision: Decision,
    actor: str,
    now: datetime,
    source: str,
    audited: bool = True,
    reason: str = "",
) -> bool:
    """End an override; the decision goes back to what the evidence supports (the conservative side:
    one admin suffices). Returns whether one was."""
    rows = list(session.scalars(
        select(DecisionOverride).where(
            DecisionOverride.model_name == model_name, DecisionOverride.model_version == model_version,
            DecisionOverride.decision == decision, DecisionOverride.revoked_at.is_(None),
        )
    ))  # fmt: skip
    for row in rows:
        row.revoked_at, row.revoked_by = now, actor
    if rows and audited:
        store.audit(
            session, actor=actor, action=AuditAction.DECISION_OVERRIDE_REVOKED, source=source, now=now,
            detail=f"{decision.label} override ended for {model_name} {model_version}"
            + (f": {reason}" if reason else ""),
        )  # fmt: skip
    return bool(rows)
