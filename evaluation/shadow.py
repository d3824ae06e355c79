"""The shadow report: a candidate model's results beside production's on the same live studies, and
both against the radiologists' readings where there are any."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from evaluation import metrics
from triage.outcomes import BreastOutcome, FractureOutcome
from triage.pipelines import Pipeline
from triage.records.tables import Feedback, FeedbackKind, Result, ShadowResult, StudyVersion


def _verdict(outcome: FractureOutcome | BreastOutcome) -> str:
    """What a model said, as compared between models: the state, or the 1-10 score (not the verdict
    the evidence gate let act: two models' evidence differs, their answers are what is compared)."""
    if isinstance(outcome, BreastOutcome) and outcome.score is not None:
        return f"score {outcome.score}"
    if isinstance(outcome, FractureOutcome) and outcome.state is not None:
        return str(outcome.state)
    return str(outcome.verdict)


def report(session: Session, pipeline: Pipeline) -> dict[str, Any]:
    """Per candidate model: agreement with production, and each against the readings."""
    kind = FeedbackKind.FRACTURE if pipeline == Pipeline.FRACTURE else FeedbackKind.CANCER
    rows = session.execute(
        select(ShadowResult, Result, StudyVersion.study_id)
        .join(Result, Result.version_id == ShadowResult.version_id)
        .join(StudyVersion, StudyVersion.id == ShadowResult.version_id)
        .where(ShadowResult.pipeline == pipeline)
        .order_by(ShadowResult.id)
    ).all()
    readings: dict[int, bool] = {}
    for study_id, value in session.execute(
        select(Feedback.study_id, Feedback.value).where(Feedback.kind == kind).order_by(Feedback.id)
    ):
        readings[study_id] = value  # the latest reading of a study counts
    candidates: dict[str, list[tuple[ShadowResult, Result, int]]] = {}
    for shadow, production, study_id in rows:
        candidates.setdefault(f"{shadow.model_name} {shadow.model_version}", []).append(
            (shadow, production, study_id)
        )
    found: dict[str, Any] = {"pipeline": pipeline, "candidates": {}}
    for name, members in candidates.items():
        both = [(s, p, study) for s, p, study in members if s.analysed and p.analysed]
        agree = sum(_verdict(s.outcome) == _verdict(p.outcome) for s, p, _ in both)
        differences = [
            abs((s.outcome.probability or 0.0) - (p.outcome.probability or 0.0)) for s, p, _ in both
        ]
        entry: dict[str, Any] = {
            "studies": len(members),
            "both_analysed": len(both),
            "verdict_agreement": agree / len(both) if both else None,
            "mean_absolute_probability_difference": sum(differences) / len(differences)
            if differences
            else None,
            "production_models": sorted({f"{p.model_name} {p.model_version}" for _, p, _ in members}),
        }
        labelled = [(s, p, readings[study]) for s, p, study in both if study in readings]
        if labelled:
            truth = [int(value) for _, _, value in labelled]
            for side, pick in (("candidate", 0), ("production", 1)):
                outcomes = [(s, p)[pick].outcome for s, p, _ in labelled]
                flagged = [bool(o.flagged) for o in outcomes]
                positives = [f for f, t in zip(flagged, truth, strict=True) if t]
                negatives = [not f for f, t in zip(flagged, truth, strict=True) if not t]
                scores = [o.probability or 0.0 for o in outcomes]
                entry[side] = {
                    "readings": len(labelled),
                    "sensitivity": sum(positives) / len(positives) if positives else None,
                    "specificity": sum(negatives) / len(negatives) if negatives else None,
                    "auroc": metrics.auroc(truth, scores) if 0 < sum(truth) < len(truth) else None,
                }
        found["candidates"][name] = entry
    return found
