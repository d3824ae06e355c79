"""Decisions switched off for a pipeline, by the live evidence (``triage.records.live_evidence``) or
by an admin, and resumed only by an admin with a reason. A switched-off decision is off whatever the
model's card or an override says (``triage.evidence``); the worker reads the switches for every
study, so a change acts on the next one. Every change is audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.evidence import DECISIONS
from triage.outcomes import Decision
from triage.pipelines import Pipeline
from triage.records import store
from triage.records.audit_actions import AuditAction
from triage.records.status_tables import DecisionSwitch

SWITCHABLE = (Decision.RULE_OUT, Decision.SINGLE_READ)  # the decisions that let a reader do less alone
LIVE_EVIDENCE = "triage live evidence"  # the actor of a switch the live evidence threw


@dataclass(frozen=True)
class SwitchState:
    pipeline: Pipeline
    decision: Decision
    off: bool
    reason: str  # why it was switched off, or why it was resumed ("" if it never changed)
    actor: str
    at: datetime | None


def _last(session: Session, pipeline: Pipeline, decision: Decision) -> DecisionSwitch | None:
    return session.scalar(
        select(DecisionSwitch)
        .where(DecisionSwitch.pipeline == pipeline, DecisionSwitch.decision == decision)
        .order_by(DecisionSwitch.id.desc())
        .limit(1)
    )


def states(session: Session) -> list[SwitchState]:
    """Every switchable decision of every pipeline, with its last change."""
    found = []
    for pipeline, decisions in DECISIONS.items():
        for decision in decisions:
            if decision not in SWITCHABLE:
                continue
            row = _last(session, pipeline, decision)
            found.append(
                SwitchState(pipeline, decision, False, "", "", None)
                if row is None
                else SwitchState(pipeline, decision, row.off, row.reason, row.actor, row.at)
            )
    return found


def switched_off(session: Session, pipeline: Pipeline) -> dict[Decision, str]:
    """The pipeline's decisions now switched off: decision -> by whom, when and why."""
    return {
        state.decision: f"{state.reason} ({state.actor}, {state.at:%Y-%m-%d %H:%M} UTC)"
        for state in states(session)
        if state.pipeline == pipeline and state.off and state.at is not None
    }


def resumed_at(session: Session, pipeline: Pipeline, decision: Decision) -> datetime | None:
    """When an admin last resumed the decision (the live evidence counts afresh from then)."""
    return session.scalar(
        select(DecisionSwitch.at)
        .where(
            DecisionSwitch.pipeline == pipeline,
            DecisionSwitch.decision == decision,
            DecisionSwitch.off.is_(False),
        )
        .order_by(DecisionSwitch.id.desc())
        .limit(1)
    )


def change(
    session: Session,
    pipeline: Pipeline,
    decision: Decision,
    off: bool,
    reason: str,
    actor: str,
    now: datetime,
) -> bool:
    """Switch ``decision`` off for the pipeline, or resume it (the evidence gate decides again);
    False if it already was so.

    Raises:
        ValueError: not a switchable decision of that pipeline, or no reason.
    """
    if decision not in SWITCHABLE or decision not in DECISIONS[pipeline]:
        raise ValueError(f"{decision.label} is not a switchable decision of the {pipeline} pipeline")
    if not reason.strip():
        raise ValueError("a switch needs a reason")
    row = _last(session, pipeline, decision)
    if (row is not None and row.off) == off:
        return False
    reason = reason.strip()
    session.add(
        DecisionSwitch(pipeline=pipeline, decision=decision, off=off, reason=reason, actor=actor, at=now)
    )
    action = AuditAction.DECISION_SWITCHED_OFF if off else AuditAction.DECISION_RESUMED
    verb = "switched off" if off else "resumed"
    store.audit(
        session, actor=actor, action=action, source="live-evidence" if actor == LIVE_EVIDENCE else "admin",
        now=now, detail=f"{pipeline} {decision.label} {verb}: {reason}",
    )  # fmt: skip
    return True
