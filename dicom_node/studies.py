"""Decides, exactly once, that a study version is complete, and what happens to it next.

A version is complete when its pipeline's expected views have arrived, when nothing has arrived
for the pipeline's quiet period, or at the completion deadline, whichever comes first. It is then
routed: QUEUED for analysis (with its task in the outbox), NOT_ANALYSED with the reason when it
fails the intended-use gate, or IGNORED when no rule takes it. A version that has no result by its
result deadline goes to NOT_ANALYSED: the conservative path is always visible, never silent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from dicom_node import routing
from triage import messages
from triage.records import outbox, store
from triage.records.db import Database, utcnow
from triage.records.tables import Study, StudyState, StudyVersion

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    """What one pass of the monitor did, for tests and logs."""

    completed: int = 0
    expired: int = 0
    requeued: int = 0
    published: int = 0


class StudyMonitor:
    """Completes, routes, expires and re-queues study versions; publishes the outbox."""

    def __init__(
        self,
        database: Database,
        config: routing.RoutingConfig,
        publisher: outbox.OutboxPublisher,
        analysis_lease_seconds: float,
    ) -> None:
        self._database = database
        self._config = config
        self._publisher = publisher
        self._lease = timedelta(seconds=analysis_lease_seconds)

    def recover(self, incoming_dir: Path, now: datetime | None = None) -> int:
        """Pick up after a restart: drop never-acknowledged partial files, restart quiet periods,
        re-queue queued work.

        Returns:
            How many queued versions were put back in the outbox.
        """
        now = now or utcnow()
        for orphan in incoming_dir.glob("*"):
            if orphan.is_file():  # a C-STORE interrupted before its durable rename: never acknowledged
                orphan.unlink()
        with self._database.session() as session:
            # Senders could not send while we were down: that was no quiet period. Give them a
            # full one from now (the completion deadline still counts from the first instance).
            for version in store.versions_in(session, StudyState.RECEIVING):
                version.last_instance_at = max(version.last_instance_at, now)
            waiting = {
                p["study_version_id"] for p in store.pending_task_payloads(session, messages.ANALYSE_STUDY)
            }
            requeued = 0
            for version in store.versions_in(session, StudyState.QUEUED):
                if version.id not in waiting and self._enqueue(session, version, now):
                    requeued += 1
        if requeued:
            logger.info("re-queued %d study version(s) found queued at start", requeued)
        return requeued

    def sweep(self, now: datetime | None = None) -> SweepResult:
        """One pass: complete due versions, expire late ones, reclaim abandoned ones, publish."""
        now = now or utcnow()
        completed = self._complete_due(now)
        expired, requeued = self._expire_and_reclaim(now)
        published = self._publisher.publish_due(now)
        return SweepResult(completed, expired, requeued, published)

    def _complete_due(self, now: datetime) -> int:
        completed = 0
        with self._database.session() as session:
            receiving = [v.id for v in store.versions_in(session, StudyState.RECEIVING)]
        for version_id in receiving:
            with self._database.session() as session:
                version = session.get(StudyVersion, version_id)
                if version is None or version.state != StudyState.RECEIVING:
                    continue
                completed += self._complete_if_due(session, version, now)
        return completed

    def _complete_if_due(self, session: Session, version: StudyVersion, now: datetime) -> int:
        facts = [
            routing.InstanceFacts(i.storage_key, i.sop_instance_uid, i.sop_class_uid, i.attributes)
            for i in store.instances_of(session, version)
        ]
        decision = routing.route(self._config, facts)
        why = self._why_complete(version, decision, now)
        if why is None:
            return 0
        if not store.transition(
            session,
            version.id,
            StudyState.RECEIVING,
            StudyState.COMPLETE,
            now,
            why,
            completed_at=now,
        ):
            return 0
        study = session.get_one(Study, version.study_id)
        outcome: routing.Route | routing.NotAnalysed
        if study.conflict:
            outcome = routing.NotAnalysed(
                "a conflicting duplicate instance was received; it is in quarantine"
            )
        elif isinstance(decision, routing.Unrouted):
            store.transition(
                session, version.id, StudyState.COMPLETE, StudyState.IGNORED, now, decision.reason
            )
            logger.info("study version %d ignored: %s", version.id, decision.reason)
            return 1
        else:
            outcome = routing.gate(self._config, decision)
        if isinstance(outcome, routing.NotAnalysed):
            pipeline = getattr(decision, "pipeline", "")
            reason = outcome.reason
            if pipeline:
                reason = f"{reason}; {self._config.pipelines[pipeline].conservative_reading}"
            store.transition(
                session,
                version.id,
                StudyState.COMPLETE,
                StudyState.NOT_ANALYSED,
                now,
                reason,
                pipeline=pipeline,
            )
            if isinstance(decision, routing.Route):  # the PACS hears of it too: SR + summary image
                report = self._payload(session, version, decision).model_dump(mode="json")
                store.enqueue(session, messages.REPORT_NOT_ANALYSED, {**report, "reason": reason}, now)
            logger.info("study version %d not analysed: %s", version.id, reason)
            return 1
        due = now + timedelta(seconds=self._config.pipelines[outcome.pipeline].result_deadline_seconds)
        store.transition(
            session,
            version.id,
            StudyState.COMPLETE,
            StudyState.QUEUED,
            now,
            f"routed by rule '{outcome.rule}'",
            pipeline=outcome.pipeline,
            result_due_at=due,
        )
        self._supersede_older(session, version, now)
        self._enqueue(session, version, now, outcome)
        logger.info("study version %d queued for %s (%s)", version.id, outcome.pipeline, why)
        return 1

    def _why_complete(
        self, version: StudyVersion, decision: routing.Route | routing.Unrouted, now: datetime
    ) -> str | None:
        if isinstance(decision, routing.Unrouted):
            quiet = self._config.unrouted_quiet_period_seconds
            deadline = quiet
        else:
            pipeline = self._config.pipelines[decision.pipeline]
            if routing.expected_views_present(self._config, decision):
                return "expected views present"
            quiet = pipeline.quiet_period_seconds
            deadline = pipeline.completion_deadline_seconds
        if now >= version.opened_at + timedelta(seconds=deadline):
            return f"completion deadline of {deadline:g} s reached"
        if now >= version.last_instance_at + timedelta(seconds=quiet):
            return f"quiet for {quiet:g} s"
        return None

    def _supersede_older(self, session: Session, version: StudyVersion, now: datetime) -> None:
        older = session.scalars(
            select(StudyVersion.id).where(
                StudyVersion.study_id == version.study_id,
                StudyVersion.number < version.number,
                StudyVersion.state == StudyState.QUEUED,
            )
        )
        for older_id in list(older):
            store.transition(
                session,
                older_id,
                StudyState.QUEUED,
                StudyState.SUPERSEDED,
                now,
                f"replaced by version {version.number}",
            )

    def _enqueue(
        self,
        session: Session,
        version: StudyVersion,
        now: datetime,
        decision: routing.Route | None = None,
    ) -> bool:
        """Write the version's analysis task to the outbox; False if it went conservative instead."""
        if decision is None:  # re-queue: the routing is re-derived from the stored facts
            facts = [
                routing.InstanceFacts(i.storage_key, i.sop_instance_uid, i.sop_class_uid, i.attributes)
                for i in store.instances_of(session, version)
            ]
            routed = routing.route(self._config, facts)
            if not isinstance(routed, routing.Route):  # the rules changed since it was queued
                store.transition(
                    session, version.id, (StudyState.QUEUED, StudyState.ANALYSING), StudyState.NOT_ANALYSED,
                    now, f"routing changed while it was queued: {routed.reason}",
                )  # fmt: skip
                return False
            decision = routed
        payload = self._payload(session, version, decision)
        store.enqueue(session, messages.ANALYSE_STUDY, payload.model_dump(mode="json"), now)
        return True

    def _payload(
        self, session: Session, version: StudyVersion, decision: routing.Route
    ) -> messages.AnalyseStudy:
        hashes = {i.sop_instance_uid: i.sha256 for i in store.instances_of(session, version)}
        return messages.AnalyseStudy(
            study_version_id=version.id,
            study_instance_uid=session.get_one(Study, version.study_id).study_instance_uid,
            version=version.number,
            pipeline=decision.pipeline,
            instances=tuple(
                messages.InstanceRef(
                    sop_instance_uid=i.sop_instance_uid,
                    sop_class_uid=i.sop_class_uid,
                    storage_key=i.storage_key,
                    sha256=hashes[i.sop_instance_uid],
                )
                for i in decision.analysed
            ),
            skipped=decision.skipped,
        )

    def _expire_and_reclaim(self, now: datetime) -> tuple[int, int]:
        expired = requeued = 0
        with self._database.session() as session:
            for version in store.versions_in(session, StudyState.QUEUED, StudyState.ANALYSING):
                if version.result_due_at is not None and now >= version.result_due_at:
                    config = self._config.pipelines.get(version.pipeline)  # gone if routing was edited
                    reading = config.conservative_reading if config else "conservative reading"
                    reason = f"no result before the result deadline; {reading}"
                    if store.transition(
                        session,
                        version.id,
                        (StudyState.QUEUED, StudyState.ANALYSING),
                        StudyState.NOT_ANALYSED,
                        now,
                        reason,
                    ):
                        logger.warning("study version %d not analysed: past its result deadline", version.id)
                        expired += 1
                elif (
                    version.state == StudyState.ANALYSING
                    and version.claimed_at is not None
                    and now >= version.claimed_at + self._lease
                ):
                    reason = "worker lost while analysing; queued again"
                    if store.transition(
                        session,
                        version.id,
                        StudyState.ANALYSING,
                        StudyState.QUEUED,
                        now,
                        reason,
                        claimed_at=None,
                    ):
                        requeued += self._enqueue(session, version, now)
        return expired, requeued
