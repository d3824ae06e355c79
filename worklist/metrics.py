"""Prometheus metrics, read from the database at scrape time, so every process (listener, worker,
API) is counted without a shared registry and a restart loses nothing. No patient data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from triage.evidence import DECISIONS
from triage.pipelines import Pipeline
from triage.records import drift, live_evidence, switches
from triage.records.db import Database
from triage.records.leadership import leader_state
from triage.records.tables import Delivery, Hl7Message, OutboxMessage, Result, StudyState, StudyVersion
from triage.settings import Settings
from worklist.operations import pacs_state

# Seconds from a study's completion to the PACS acknowledging all its results; the target is 3 s.
LATENCY_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


def _by_pipeline(
    session: Session, name: str, documentation: str, column: InstrumentedAttribute[str], label: str
) -> Metric:
    """Study versions counted by one of their columns and their pipeline."""
    family = GaugeMetricFamily(name, documentation, labels=[label, "pipeline"])
    query = select(column, StudyVersion.pipeline, func.count()).group_by(column, StudyVersion.pipeline)
    for value, pipeline, count in session.execute(query):
        family.add_metric([str(value), pipeline or "none"], count)
    return family


def _versions(session: Session) -> Metric:
    return _by_pipeline(
        session, "triage_study_versions", "Study versions by state and pipeline", StudyVersion.state, "state"
    )


def _verdicts(session: Session) -> Metric:
    return _by_pipeline(
        session,
        "triage_verdicts",
        "Study versions by the verdict that acts (NORMAL_READING: below DOUBT from a model whose "
        "evidence does not support a rule-out)",
        StudyVersion.verdict,
        "verdict",
    )


def _backlog(session: Session) -> Metric:
    queued = session.scalar(
        select(func.count()).where(StudyVersion.state.in_((StudyState.QUEUED, StudyState.ANALYSING)))
    )
    unpublished = session.scalar(select(func.count()).where(OutboxMessage.published_at.is_(None)))
    family = GaugeMetricFamily(
        "triage_queue_depth", "Work waiting for a worker or for the broker", labels=["queue"]
    )
    family.add_metric(["analysis"], queued or 0)
    family.add_metric(["outbox"], unpublished or 0)
    return family


def _deliveries(session: Session) -> Metric:
    family = GaugeMetricFamily(
        "triage_deliveries", "Result objects for the PACS by state (FAILED: gave up)", labels=["state"]
    )
    for state, count in session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)):
        family.add_metric([str(state)], count)
    return family


def _hl7_messages(session: Session) -> Metric:
    family = GaugeMetricFamily(
        "triage_hl7_messages", "HL7 result messages for the RIS by state (FAILED: gave up)", labels=["state"]
    )
    for state, count in session.execute(select(Hl7Message.state, func.count()).group_by(Hl7Message.state)):
        family.add_metric([str(state)], count)
    return family


def _latency(session: Session) -> Metric:
    """Counted in SQL from the seconds stored at each REPORTED transition: a scrape costs the same at
    a region's years of studies as at a day's."""
    buckets = [func.sum(case((StudyVersion.reported_seconds <= b, 1), else_=0)) for b in LATENCY_BUCKETS]
    rows = session.execute(
        select(StudyVersion.pipeline, func.count(), func.sum(StudyVersion.reported_seconds), *buckets)
        .where(StudyVersion.reported_seconds.is_not(None))
        .group_by(StudyVersion.pipeline)
        .order_by(StudyVersion.pipeline)
    ).all()
    family = HistogramMetricFamily(
        "triage_completion_to_report_seconds",
        "Seconds from a study's completion to the PACS acknowledging its results",
        labels=["pipeline"],
    )
    for pipeline, count, total, *counts in rows:
        found = [(str(b), _number(n)) for b, n in zip(LATENCY_BUCKETS, counts, strict=True)]
        found.append(("+Inf", _number(count)))
        family.add_metric([str(pipeline)], found, sum_value=_number(total))
    return family


def _number(value: object) -> float:
    """A SQL sum or count as a float (a sum over no rows is NULL; PostgreSQL's may be a Decimal)."""
    return float(value) if isinstance(value, int | float | Decimal) else 0.0


def _scores(session: Session) -> Metric:
    family = GaugeMetricFamily(
        "triage_screening_scores", "Screens by 1-10 risk score (analysed screens only)", labels=["score"]
    )
    counts = {str(n): 0 for n in range(1, 11)}
    query = (
        select(Result.score, func.count())
        .where(Result.pipeline == Pipeline.BREAST, Result.analysed.is_(True), Result.score.is_not(None))
        .group_by(Result.score)
    )
    for value, count in session.execute(query):
        counts[str(value)] = count
    for label, count in counts.items():
        family.add_metric([label], count)
    return family


def _decisions(session: Session) -> Metric:
    """The evidence gate as the latest analysed result of each pipeline froze it: 1 when a decision
    was taken (``basis`` evidence, or an admin's override), 0 when it was not enabled."""
    family = GaugeMetricFamily(
        "triage_decision_enabled",
        "Whether the model in force may take a decision that lets a reader do less (latest result)",
        labels=["pipeline", "decision", "basis"],
    )
    for pipeline in Pipeline:
        outcome = session.scalar(
            select(Result.outcome)
            .where(Result.pipeline == pipeline, Result.analysed.is_(True))
            .order_by(Result.id.desc())
            .limit(1)
        )
        if outcome is None:
            continue
        for decision in DECISIONS[pipeline]:
            if decision in outcome.not_enabled:
                family.add_metric([pipeline, decision, "none"], 0)
            else:
                basis = "override" if decision in outcome.overridden else "evidence"
                family.add_metric([pipeline, decision, basis], 1)
    return family


def _switches(session: Session) -> Metric:
    family = GaugeMetricFamily(
        "triage_decision_switched_off",
        "1 while a decision is switched off (by the live evidence or an admin) until an admin resumes it",
        labels=["pipeline", "decision"],
    )
    for state in switches.states(session):
        family.add_metric([state.pipeline, state.decision], 1.0 if state.off else 0.0)
    return family


def _live(session: Session, settings: Settings, now: datetime) -> Iterator[Metric]:
    """The live evidence of each switchable decision: its counts and interval, and the card's claim."""
    names = {
        "positives": "Fractures (rule-out) or cancers (single reading) among the outcomes in the window",
        "hits": "Of them: at or above DOUBT (rule-out), or single-read by score (single reading)",
        "discordances": "Patients the decision touched wrongly within the discordance window",
        "ci95_low": "Lower 95 % Wilson bound of the live figure (hits / positives)",
        "ci95_high": "Upper 95 % Wilson bound of the live figure (hits / positives)",
        "claim": "The card's claim the live figure is tested against",
    }
    found = [live_evidence.figure(session, decision, settings, now) for decision in switches.SWITCHABLE]
    for name, documentation in names.items():
        family = GaugeMetricFamily(f"triage_live_{name}", documentation, labels=["decision"])
        for figure in found:
            value = getattr(figure, name)
            if value is not None:
                family.add_metric([figure.decision], float(value))
        yield family


def _drift(session: Session, settings: Settings, now: datetime) -> Iterator[Metric]:
    """The score distribution per scanner against the model's reference (``triage.records.drift``)."""
    studies = GaugeMetricFamily(
        "triage_score_drift_studies",
        "Analysed studies of the model in force within the drift window, per scanner",
        labels=["pipeline", "scanner"],
    )
    index = GaugeMetricFamily(
        "triage_score_psi",
        "Population stability index of the exam probability per scanner against the model's reference "
        "deciles (above 0.25: a shift to act on)",
        labels=["pipeline", "scanner"],
    )
    for pipeline in Pipeline:
        for found in drift.drift(
            session, pipeline, now, settings.drift_window_days, settings.drift_min_studies
        ):
            studies.add_metric([pipeline, found.scanner or "unknown"], found.studies)
            if found.psi is not None:
                index.add_metric([pipeline, found.scanner or "unknown"], found.psi)
    yield studies
    yield index


def _leader(session: Session, now: datetime) -> Metric:
    family = GaugeMetricFamily(
        "triage_seconds_without_leader",
        "Seconds since the leading listener's lease lapsed (0 while one leads): nothing completes, "
        "expires or is delivered meanwhile",
    )
    state = leader_state(session, now)
    family.add_metric([], state.without_leader_seconds if state is not None else 0.0)
    return family


class DatabaseCollector(Collector):
    """Studies by state, backlog, completion-to-report latency, deliveries, the 1-10 scores, the PACS."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings

    def collect(self) -> Iterator[Metric]:
        with self._database.reading() as session:
            families = (
                _versions,
                _verdicts,
                _decisions,
                _backlog,
                _deliveries,
                _hl7_messages,
                _latency,
                _scores,
            )
            for family in families:
                yield family(session)
            yield _switches(session)
            yield from _live(session, self._settings, self._database.now())
            yield from _drift(session, self._settings, self._database.now())
            yield _leader(session, self._database.now())
        pacs = pacs_state(self._settings, self._database)
        if pacs != "not configured":
            reachable = GaugeMetricFamily(
                "triage_pacs_reachable", "1 when the PACS last answered C-ECHO (NaN: not checked lately)"
            )
            reachable.add_metric([], {"reachable": 1.0, "unreachable": 0.0}.get(pacs, float("nan")))
            yield reachable
