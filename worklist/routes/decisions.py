"""The decisions that let a reader do less, as the live evidence and the admins left them: each
one's switch, the live figure against the card's claim, and an admin's switching off or resuming
(audited, with a reason; acts on the next study)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from triage.outcomes import Decision
from triage.pipelines import Pipeline
from triage.records import decision_changes, live_evidence, performance, switches
from triage.records.db import utcnow
from worklist.deps import Admin, State
from worklist.schemas import AUTH, MAX_ID, TEXT, problems

router = APIRouter(prefix="/api/decisions", tags=["admin"])


class DecisionState(BaseModel):
    pipeline: Pipeline
    decision: Decision
    switched_off: bool
    reason: str = Field(description="Why it was switched off, or resumed; empty if never switched")
    actor: str
    at: datetime | None
    model: str = Field(description="The model in force whose results the live figure counts")
    claim: float | None = Field(description="The card's claim, frozen into its latest result")
    positives: int = Field(description="Fractures (rule-out) or cancers (single reading) among the outcomes")
    hits: int = Field(description="Of them: at or above DOUBT (rule-out), or single-read by score")
    live_value: float | None
    ci95_low: float
    ci95_high: float
    discordances: int = Field(description="Patients the decision touched wrongly, within the window")


class SwitchChange(BaseModel):
    reason: str = Field(min_length=3, max_length=500, pattern=TEXT, description="Why, for the audit log")


def _states(state: State) -> list[DecisionState]:
    now = utcnow()
    with state.database.reading() as session:
        found = []
        for switch in switches.states(session):
            live = live_evidence.figure(session, switch.decision, state.settings, now)
            found.append(
                DecisionState(
                    pipeline=switch.pipeline,
                    decision=switch.decision,
                    switched_off=switch.off,
                    reason=switch.reason,
                    actor=switch.actor,
                    at=switch.at,
                    model=live.model,
                    claim=live.claim,
                    positives=live.positives,
                    hits=live.hits,
                    live_value=live.value,
                    ci95_low=live.ci95_low,
                    ci95_high=live.ci95_high,
                    discordances=live.discordances,
                )
            )
    return found


@router.get("", responses=AUTH)
def list_decisions(principal: Admin, state: State) -> list[DecisionState]:
    """Each switchable decision: on or switched off, and its live evidence against the card's claim."""
    return _states(state)


def _change(
    pipeline: Pipeline, decision: Decision, off: bool, body: SwitchChange, principal: Admin, state: State
) -> DecisionState:
    with state.database.session() as session:
        try:
            changed = switches.change(session, pipeline, decision, off, body.reason, principal.name, utcnow())
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
    if not changed:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{decision.label} is already {'off' if off else 'on'}")
    return next(s for s in _states(state) if s.pipeline == pipeline and s.decision == decision)


@router.post("/{pipeline}/{decision}/off", responses=problems(400, 401, 403, 409, 422))
def switch_off(
    pipeline: Pipeline, decision: Decision, body: SwitchChange, principal: Admin, state: State
) -> DecisionState:
    """Switch a decision off now (studies take the conservative path from the next one)."""
    return _change(pipeline, decision, True, body, principal, state)


@router.post("/{pipeline}/{decision}/resume", responses=problems(400, 401, 403, 409, 422))
def resume(
    pipeline: Pipeline, decision: Decision, body: SwitchChange, principal: Admin, state: State
) -> DecisionState:
    """Let the evidence gate decide again; the live evidence counts afresh from now."""
    return _change(pipeline, decision, False, body, principal, state)


class ChangeProposal(BaseModel):
    pipeline: Pipeline
    decision: Decision = Field(description="rule_out or boxes (fracture), single_read (breast)")
    model_name: str = Field(
        default="",
        max_length=128,
        pattern=TEXT,
        description="The model version the decision is enabled for against its evidence (rule_out and"
        " boxes: required; single_read: optional, else the threshold alone moves)",
    )
    model_version: str = Field(default="", max_length=64, pattern=TEXT)
    single_read_max_score: int | None = Field(
        default=None, ge=0, le=10, description="single_read: the new threshold"
    )
    effective_at: datetime = Field(description="When it takes effect, once a second admin approved it")
    reason: str = Field(min_length=3, max_length=500, pattern=TEXT)


class DecisionChangeView(BaseModel):
    id: int
    pipeline: Pipeline
    decision: Decision
    model_name: str
    model_version: str
    single_read_max_score: int | None
    effective_at: datetime
    reason: str
    what_if: dict[str, object] = Field(description="What it would have done to the site's recent studies")
    proposed_by: str
    proposed_at: datetime
    approved_by: str | None
    approved_at: datetime | None


@router.get("/changes", responses=AUTH)
def list_changes(principal: Admin, state: State) -> list[DecisionChangeView]:
    """Proposed and approved changes, newest first."""
    with state.database.reading() as session:
        return [
            DecisionChangeView.model_validate(c, from_attributes=True)
            for c in decision_changes.listed(session)
        ]


@router.post("/changes", status_code=201, responses=problems(400, 401, 403, 422))
def propose_change(body: ChangeProposal, principal: Admin, state: State) -> DecisionChangeView:
    """Propose enabling a decision, or a new single-reading threshold; its what-if on the site's own
    recent studies comes back with it. Nothing changes until a second admin approves."""
    model = (body.model_name, body.model_version) if body.model_name and body.model_version else None
    with state.database.session() as session:
        try:
            row = decision_changes.propose(
                session, pipeline=body.pipeline, decision=body.decision, model=model,
                single_read_max_score=body.single_read_max_score, effective_at=body.effective_at,
                reason=body.reason, actor=principal.name, settings=state.settings, now=utcnow(),
                source="admin",
            )  # fmt: skip
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        return DecisionChangeView.model_validate(row, from_attributes=True)


@router.post("/changes/{change_id}/approve", responses=problems(400, 401, 403, 404, 409, 422))
def approve_change(
    change_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], principal: Admin, state: State
) -> DecisionChangeView:
    """A second admin's approval: the change is in force from its stated time (409 for the proposer)."""
    with state.database.session() as session:
        try:
            row = decision_changes.approve(session, change_id, principal.name, utcnow(), "admin")
        except LookupError as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from None
        except (PermissionError, ValueError) as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        return DecisionChangeView.model_validate(row, from_attributes=True)


class Performance(BaseModel):
    rule_out_specificity: dict[str, object] = Field(
        description="Among trauma studies read as fracture-free, the share below DOUBT (Wilson 95 % interval)"
    )
    screening_by_month: list[dict[str, object]] = Field(
        description="Per month: screens, share single-read by score, cancers per 1,000 by route"
    )
    not_analysed: dict[str, dict[str, object]] = Field(
        description="Per pipeline: the rate and the count per reason"
    )
    completion_to_report: dict[str, dict[str, object]] = Field(
        description="Per pipeline: seconds from completion to the PACS acknowledging the results"
        " (median, 95th percentile, count)"
    )


@router.get("/performance", responses=AUTH)
def live_performance(principal: Admin, state: State) -> Performance:
    """The live performance from the outcomes so far (the live-evidence window; twelve months of screens)."""
    now = utcnow()
    since = now - timedelta(days=state.settings.live_evidence_window_days)
    with state.database.reading() as session:
        return Performance(
            rule_out_specificity=performance.rule_out_specificity(session, state.settings, now),
            screening_by_month=performance.screening_by_month(session, state.settings, now),
            not_analysed={p: performance.not_analysed_by_reason(session, p, since) for p in Pipeline},
            completion_to_report={p: performance.completion_to_report(session, p, since) for p in Pipeline},
        )
