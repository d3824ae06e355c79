"""What operators watch: readiness of the database, the queue and the PACS, and Prometheus metrics.

Metrics are read from the database at scrape time, so every process (listener, worker, API) is
counted without a shared registry, and a restart loses nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Literal

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from triage.outcomes import BreastOutcome
from triage.pipelines import Pipeline
from triage.records import queries
from triage.records.db import Database, utcnow
from triage.records.tables import (
    PACS,
    PEER_CHECK_SECONDS,
    Delivery,
    OutboxMessage,
    Result,
    StateChange,
    StudyState,
    StudyVersion,
)
from triage.settings import Settings

# Seconds from a study's completion to the PACS acknowledging all its results; the target is 3 s.
LATENCY_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
_CHECK_CACHE_SECONDS = 15.0


class CachedCheck:
    """A slow check (C-ECHO to the PACS, a broker connection) run at most every ``ttl`` seconds."""

    def __init__(self, check: Callable[[], bool], ttl_seconds: float = _CHECK_CACHE_SECONDS) -> None:
        self._check = check
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._value: bool | None = None
        self._at = 0.0

    def __call__(self) -> bool:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > self._ttl:
                self._value = self._check()
                self._at = time.monotonic()
            return self._value


def database_ready(database: Database) -> bool:
    try:
        with database.session() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


def queue_check(settings: Settings) -> Callable[[], bool]:
    """Whether tasks can be handed to the broker: its folder (embedded), or a connection to it."""
    if settings.broker_url is None:
        folder = settings.queue_dir / "messages"
        return lambda: folder.is_dir() and os.access(folder, os.W_OK)

    url = settings.broker_url.get_secret_value()

    def connect() -> bool:
        from kombu.connection import Connection
        from kombu.exceptions import OperationalError

        try:
            with Connection(url, connect_timeout=2) as connection:  # type: ignore[no-untyped-call]
                connection.ensure_connection(max_retries=1, timeout=2)
        except (OperationalError, OSError):
            return False
        return True

    return connect


def pacs_state(
    settings: Settings, database: Database
) -> Literal["reachable", "unreachable", "not configured", "unknown"]:
    """The PACS as the delivering process last found it (C-ECHO); "unknown" when it has not looked
    for a while (the listener's process is not running)."""
    if settings.pacs is None:
        return "not configured"
    with database.session() as session:
        status = queries.peer_status(session, PACS)
        if status is None or utcnow() - status.checked_at > timedelta(seconds=3 * PEER_CHECK_SECONDS):
            return "unknown"
        return "reachable" if status.reachable else "unreachable"


class DatabaseCollector(Collector):
    """Studies by state, backlog, completion-to-report latency, deliveries, and the 1-10 scores."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings

    def collect(self) -> Iterator[Metric]:
        with self._database.session() as session:
            by_state = GaugeMetricFamily(
                "triage_study_versions", "Study versions by state and pipeline", labels=["state", "pipeline"]
            )
            for state, pipeline, count in session.execute(
                select(StudyVersion.state, StudyVersion.pipeline, func.count()).group_by(
                    StudyVersion.state, StudyVersion.pipeline
                )
            ):
                by_state.add_metric([str(state), pipeline or "none"], count)
            yield by_state

            queued = session.scalar(
                select(func.count()).where(StudyVersion.state.in_((StudyState.QUEUED, StudyState.ANALYSING)))
            )
            unpublished = session.scalar(select(func.count()).where(OutboxMessage.published_at.is_(None)))
            backlog = GaugeMetricFamily(
                "triage_queue_depth", "Work waiting for a worker or for the broker", labels=["queue"]
            )
            backlog.add_metric(["analysis"], queued or 0)
            backlog.add_metric(["outbox"], unpublished or 0)
            yield backlog

            deliveries = GaugeMetricFamily(
                "triage_deliveries",
                "Result objects for the PACS by state (FAILED: gave up)",
                labels=["state"],
            )
            for delivery_state, count in session.execute(
                select(Delivery.state, func.count()).group_by(Delivery.state)
            ):
                deliveries.add_metric([str(delivery_state)], count)
            yield deliveries

            yield self._latency(session)

            scores = GaugeMetricFamily(
                "triage_screening_scores",
                "Screens by 1-10 risk score (analysed screens only)",
                labels=["score"],
            )
            counts = {str(n): 0 for n in range(1, 11)}
            for outcome in session.scalars(
                select(Result.outcome).where(Result.pipeline == Pipeline.BREAST, Result.analysed.is_(True))
            ):
                if isinstance(outcome, BreastOutcome) and outcome.score is not None:
                    counts[str(outcome.score)] += 1
            for score, count in counts.items():
                scores.add_metric([score], count)
            yield scores

        pacs = pacs_state(self._settings, self._database)
        if pacs != "not configured":
            reachable = GaugeMetricFamily(
                "triage_pacs_reachable", "1 when the PACS last answered C-ECHO (NaN: not checked lately)"
            )
            reachable.add_metric([], {"reachable": 1.0, "unreachable": 0.0}.get(pacs, float("nan")))
            yield reachable

    @staticmethod
    def _latency(session: Session) -> Metric:
        rows = session.execute(
            select(StudyVersion.pipeline, StudyVersion.completed_at, StateChange.at)
            .join(StateChange, StateChange.version_id == StudyVersion.id)
            .where(StateChange.state == StudyState.REPORTED, StudyVersion.completed_at.is_not(None))
        ).all()
        family = HistogramMetricFamily(
            "triage_completion_to_report_seconds",
            "Seconds from a study's completion to the PACS acknowledging its results",
            labels=["pipeline"],
        )
        per_pipeline: dict[str, list[float]] = {}
        for pipeline, completed, reported in rows:
            assert isinstance(completed, datetime) and isinstance(reported, datetime)
            per_pipeline.setdefault(pipeline, []).append((reported - completed).total_seconds())
        for pipeline, values in sorted(per_pipeline.items()):
            buckets = [(str(b), float(sum(v <= b for v in values))) for b in LATENCY_BUCKETS]
            buckets.append(("+Inf", float(len(values))))
            family.add_metric([pipeline], buckets, sum_value=sum(values))
        return family
