"""The live evidence: what the outcomes that come back (radiologists' readings of studies triage
analysed) say of the decisions the model in force takes, against what its card claims, and the
switch that turns a decision off when they say it no longer holds.

For the rule-out: among studies read as fractured, the share the model put at or above DOUBT (live
sensitivity at DOUBT, with its Wilson interval). For single reading: among screens that turned out
cancers, the share whose score would single-read them. Only the outcomes of the model version that
made the latest result count (a new model starts its own evidence), within a rolling window and
since an admin last resumed the decision (a resumed decision is judged afresh); the latest reading
of a study is its outcome. A discordance is a patient the decision touched: a
fracture on a study cleared as NO FRACTURE, a cancer on a screen sent to one reader.

Readings recorded on triage's page are what a radiologist saw, so they carry verification bias: a
fracture that nobody looked for again does not come back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage.evidence_settings import EvidenceSettings
from triage.outcomes import BreastOutcome, Decision, FractureOutcome, FractureState, Route, Verdict
from triage.pipelines import Pipeline
from triage.proportions import wilson_interval
from triage.records import switches
from triage.records.tables import Feedback, FeedbackKind, Result

OUTCOME_KIND = {Decision.RULE_OUT: FeedbackKind.FRACTURE, Decision.SINGLE_READ: FeedbackKind.CANCER}
PIPELINE = {Decision.RULE_OUT: Pipeline.FRACTURE, Decision.SINGLE_READ: Pipeline.BREAST}


@dataclass(frozen=True)
class LiveFigure:
    """One decision's live evidence for the model in force."""

    decision: Decision
    model: str  # "name version", "" when the pipeline has no analysed result yet
    claim: float | None  # what the card claims (frozen into the latest result); None: no evidence
    positives: int  # fractures / cancers among the outcomes in the window
    hits: int  # of them: at or above DOUBT / single-read
    discordances: int  # within the discordance window
    ci95_low: float
    ci95_high: float

    @property
    def value(self) -> float | None:
        return self.hits / self.positives if self.positives else None


def _latest_result(session: Session, pipeline: Pipeline) -> Result | None:
    return session.scalar(
        select(Result)
        .where(Result.pipeline == pipeline, Result.analysed.is_(True))
        .order_by(Result.id.desc())
        .limit(1)
    )


def _positive_outcomes(
    session: Session, kind: FeedbackKind, latest: Result, since: datetime
) -> list[tuple[Feedback, Result]]:
    """Each study's latest reading of ``kind`` in the window, judging a result of the model in
    force, where that reading says yes."""
    rows = session.execute(
        select(Feedback, Result)
        .join(Result, Result.id == Feedback.result_id)
        .where(
            Feedback.kind == kind,
            Feedback.at >= since,
            Result.model_name == latest.model_name,
            Result.model_version == latest.model_version,
        )
        .order_by(Feedback.id)
    ).all()
    latest_per_study: dict[int, tuple[Feedback, Result]] = {}
    for feedback, result in rows:
        latest_per_study[feedback.study_id] = (feedback, result)
    return [(f, r) for f, r in latest_per_study.values() if f.value and r.analysed]


def _counts(
    decision: Decision, outcome: FractureOutcome | BreastOutcome, single_read_max_score: int
) -> tuple[bool, bool]:
    """(the model's call was a hit, the decision touched the patient) for one positive outcome."""
    if isinstance(outcome, FractureOutcome):
        return outcome.state is not FractureState.NO_FRACTURE, outcome.verdict is Verdict.NO_FRACTURE
    assert outcome.score is not None
    return outcome.score <= single_read_max_score, outcome.route is Route.SINGLE_READ


def figure(session: Session, decision: Decision, settings: EvidenceSettings, now: datetime) -> LiveFigure:
    """The live evidence of ``decision`` for its pipeline's model in force."""
    latest = _latest_result(session, PIPELINE[decision])
    if latest is None:
        return LiveFigure(decision, "", None, 0, 0, 0, 0.0, 1.0)
    resumed = switches.resumed_at(session, PIPELINE[decision], decision)
    since = now - timedelta(days=settings.live_evidence_window_days)
    recent = now - timedelta(days=settings.live_evidence_discordance_days)
    if resumed is not None:
        since, recent = max(since, resumed), max(recent, resumed)
    hits = discordances = 0
    found = _positive_outcomes(session, OUTCOME_KIND[decision], latest, since)
    for feedback, result in found:
        hit, touched = _counts(decision, result.outcome, settings.single_read_max_score)
        hits += hit
        discordances += touched and feedback.at >= recent
    low, high = wilson_interval(hits, len(found))
    claim = latest.outcome.claims.get(decision)
    model = f"{latest.model_name} {latest.model_version}"
    return LiveFigure(decision, model, claim, len(found), hits, discordances, low, high)


def why_switch_off(found: LiveFigure, settings: EvidenceSettings) -> str | None:
    """Why the live evidence says the decision no longer holds; None while it does."""
    if found.discordances >= settings.live_evidence_max_discordances:
        touched = (
            "fractures on studies cleared as NO FRACTURE"
            if found.decision is Decision.RULE_OUT
            else ("cancers on screens sent to single reading")
        )
        return (
            f"{found.discordances} {touched} within {settings.live_evidence_discordance_days:g} days "
            f"(the site switches off at {settings.live_evidence_max_discordances})"
        )
    if found.claim is None or found.positives < settings.live_evidence_min_outcomes:
        return None
    if found.decision is Decision.RULE_OUT and found.ci95_high < found.claim:
        return (
            f"live sensitivity at DOUBT {found.hits}/{found.positives} (95 % upper bound "
            f"{found.ci95_high:.3f}) is below the card's claim {found.claim:.3f} ({found.model})"
        )
    if found.decision is Decision.SINGLE_READ and found.ci95_low > found.claim:
        return (
            f"{found.hits} of {found.positives} cancers would have been single read (95 % lower bound "
            f"{found.ci95_low:.3f}), above the card's claim {found.claim:.3f} ({found.model})"
        )
    return None


def check(session: Session, settings: EvidenceSettings, now: datetime) -> list[Decision]:
    """Switch off each decision the live evidence no longer supports; returns those switched now.
    Called whenever an outcome arrives; a decision already off stays off (an admin resumes it)."""
    switched = []
    for decision in switches.SWITCHABLE:
        why = why_switch_off(figure(session, decision, settings, now), settings)
        if why is not None and switches.change(
            session, PIPELINE[decision], decision, True, why, switches.LIVE_EVIDENCE, now
        ):
            switched.append(decision)
    return switched
