"""Live performance beside the live evidence (``triage.records.live_evidence``): the rule-out's
specificity among studies read as fracture-free, the screening programme month by month (screens,
share at or below the single-reading threshold then in force, cancers per 1,000 screens by route
and in the single-read arm), the NOT ANALYSED rate by reason, and completion to SR (median, p95).
From the outcomes recorded so far, so the figures lag the outcomes; each share with its Wilson 95 %
interval and count.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.evidence_settings import EvidenceSettings
from triage.outcomes import BreastOutcome, FractureOutcome, FractureState, Route
from triage.pipelines import Pipeline
from triage.proportions import wilson_interval
from triage.records.tables import Feedback, FeedbackKind, Result, StudyState, StudyVersion


def share(hits: int, total: int) -> dict[str, object]:
    """A share with its Wilson 95 % interval and count, JSON-ready (value None when nothing counted)."""
    low, high = wilson_interval(hits, total)
    return {
        "value": round(hits / total, 4) if total else None,
        "ci95_low": round(low, 4),
        "ci95_high": round(high, 4),
        "n": total,
    }


def latest_readings(session: Session, kind: FeedbackKind, since: datetime) -> dict[int, bool]:
    """Result id -> the latest reading of ``kind`` on it, within the window."""
    found: dict[int, bool] = {}
    rows = session.execute(
        select(Feedback.result_id, Feedback.value)
        .where(Feedback.kind == kind, Feedback.at >= since, Feedback.result_id.is_not(None))
        .order_by(Feedback.id)
    )
    for result_id, value in rows:
        if result_id is not None:
            found[result_id] = bool(value)
    return found


def rule_out_specificity(session: Session, settings: EvidenceSettings, now: datetime) -> dict[str, object]:
    """Among trauma studies read as fracture-free, the share the model put below DOUBT."""
    since = now - timedelta(days=settings.live_evidence_window_days)
    negatives = [
        result_id
        for result_id, value in latest_readings(session, FeedbackKind.FRACTURE, since).items()
        if not value
    ]
    outcomes = session.scalars(
        select(Result.outcome).where(Result.id.in_(negatives), Result.analysed.is_(True))
    ).all()
    fracture = [o for o in outcomes if isinstance(o, FractureOutcome)]
    return share(sum(o.state is FractureState.NO_FRACTURE for o in fracture), len(fracture))


def screening_by_month(
    session: Session, settings: EvidenceSettings, now: datetime, months: int = 12
) -> list[dict[str, object]]:
    """Per calendar month of the last ``months``: screens, the share single-read by score, cancers
    per 1,000 screens by route and the cancers in the single-read arm."""
    since = now - timedelta(days=31 * months)
    cancers = latest_readings(session, FeedbackKind.CANCER, since - timedelta(days=3 * 365))
    rows = session.execute(
        select(Result.id, Result.created_at, Result.outcome).where(
            Result.pipeline == Pipeline.BREAST, Result.analysed.is_(True), Result.created_at >= since
        )
    ).all()
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for result_id, created, outcome in rows:
        if not isinstance(outcome, BreastOutcome) or outcome.score is None:
            continue
        counting = per[f"{created:%Y-%m}"]
        single_by_score = outcome.score <= (outcome.single_read_max_score or 0)
        route = "single" if outcome.route is Route.SINGLE_READ else "double"
        counting["screens"] += 1
        counting["at_or_below_threshold"] += single_by_score
        counting[f"{route}_screens"] += 1
        if cancers.get(result_id):
            counting[f"{route}_cancers"] += 1
            counting["cancers_at_or_below_threshold"] += single_by_score
    found = []
    for month, counts in sorted(per.items()):
        cancers_total = counts["single_cancers"] + counts["double_cancers"]
        found.append({
            "month": month,
            "screens": counts["screens"],
            "share_at_or_below_threshold": share(counts["at_or_below_threshold"], counts["screens"]),
            "cancers_per_1000": {
                route: round(1000 * counts[f"{route}_cancers"] / counts[f"{route}_screens"], 1)
                if counts[f"{route}_screens"] else None
                for route in ("single", "double")
            },
            "cancers_in_single_read_arm": share(counts["single_cancers"], cancers_total),
        })  # fmt: skip
    return found


def not_analysed_by_reason(session: Session, pipeline: Pipeline, since: datetime) -> dict[str, object]:
    """The share of a pipeline's study versions that went NOT ANALYSED, and how many for each reason
    (its first clause: "modality CT is outside ...; normal reading" counts as its part before ";")."""
    total = (
        session.scalar(
            select(func.count()).where(StudyVersion.pipeline == pipeline, StudyVersion.opened_at >= since)
        )
        or 0
    )
    reasons = session.scalars(
        select(StudyVersion.reason).where(
            StudyVersion.pipeline == pipeline,
            StudyVersion.opened_at >= since,
            StudyVersion.state == StudyState.NOT_ANALYSED,
        )
    ).all()
    counted = Counter(
        (reason or "no reason recorded").split(";")[0].split(":")[0].strip()[:120] for reason in reasons
    )
    return {"rate": share(len(reasons), total), "by_reason": dict(counted.most_common(20))}


def completion_to_report(session: Session, pipeline: Pipeline, since: datetime) -> dict[str, object]:
    """Seconds from a study's completion to the PACS acknowledging its results, for the pipeline's
    versions opened since ``since``: the median and the 95th percentile (nearest rank), and how many.
    Two small queries whatever the window holds: a count, then the value at each rank."""
    window = (
        StudyVersion.pipeline == pipeline,
        StudyVersion.opened_at >= since,
        StudyVersion.reported_seconds.is_not(None),
    )
    count = session.scalar(select(func.count()).where(*window)) or 0

    def at(quantile: float) -> float | None:
        if not count:
            return None
        rank = max(math.ceil(quantile * count) - 1, 0)
        value = session.scalar(
            select(StudyVersion.reported_seconds).where(*window).order_by(StudyVersion.reported_seconds)
            .offset(rank).limit(1)
        )  # fmt: skip
        return None if value is None else round(float(value), 2)

    return {"p50_seconds": at(0.5), "p95_seconds": at(0.95), "n": count}
