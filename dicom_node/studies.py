"""Decides, exactly once, that a study version is complete, and what happens to it next.

A version is complete when its pipeline's expected views have arrived, when nothing has arrived
for the pipeline's quiet period, or at the completion deadline, whichever comes first. It is then
routed: QUEUED for analysis (with its task in the outbox), NOT_ANALYSED with the reason when it
fails the intended-use gate, or IGNORED when no rule takes it. A version that has no result by its
result deadline goes to NOT_ANALYSED: the conservative path is always visible, never silent.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from dicom_node import routing
from triage import messages
from triage.cards import IntendedUse
from triage.header_facts import HeaderFacts
from triage.pipelines import Pipeline
from triage.records import outbox, queries, store, withdrawals
from triage.records.db import Database
from triage.records.tables import StudyState, StudyVersion

logger = logging.getLogger(__name__)
CONFLICT = (
    "conflicting instances were received (a conflicting duplicate kept in quarantine, another patient "
    "under the same Study Instance UID, or an instance of the study refused); an admin must check them"
)


@dataclass(frozen=True)
class SweepResult:
    """What one pass of the monitor did, for tests and logs."""

    completed: int = 0
    expired: int = 0
    requeued: int = 0
    published: int = 0


def instance_facts(session: Session, version: StudyVersion) -> list[routing.InstanceFacts]:
    """What routing knows of every instance of a version, read once."""
    return [
        routing.InstanceFacts(
            i.storage_key, i.sop_instance_uid, i.sop_class_uid, i.sha256, HeaderFacts.from_json(i.attributes)
        )
        for i in queries.instances_of(session, version)
    ]


class StudyMonitor:
    """Completes, routes, expires and re-queues study versions; publishes the outbox."""

    def __init__(
        self,
        database: Database,
        config: routing.RoutingConfig,
        publisher: outbox.OutboxPublisher,
        analysis_lease_seconds: float,
        intended_uses: Mapping[Pipeline, IntendedUse] | None = None,
        analysis_max_attempts: int = 3,
    ) -> None:
        self._database = database
        self._config = config
        self._publisher = publisher
        self._lease = timedelta(seconds=analysis_lease_seconds)
        self._max_attempts = analysis_max_attempts
        self._intended_uses = dict(intended_uses or {})

    def recover(self, now: datetime | None = None) -> int:
        """Pick up after a restart: restart quiet periods, re-queue queued work (partial receptions
        are the reconciler's).

        Returns:
            How many queued versions were put back in the outbox.
        """
        now = now or self._database.now()
        with self._database.session() as session:
            # Senders could not send while we were down: that was no quiet period.
            store.restart_quiet_periods(session, now)
            waiting = {
                p["study_version_id"] for p in queries.pending_task_payloads(session, messages.ANALYSE_STUDY)
            }
            requeued = 0
            for version in queries.versions_in(session, StudyState.QUEUED):
                if version.id not in waiting and self._enqueue(session, version, now):
                    requeued += 1
        if requeued:
            logger.info("re-queued %d study version(s) found queued at start", requeued)
        return requeued

    def requeue_stale(self, now: datetime, older_than_seconds: float) -> int:
        """Queue again the versions queued longer than ``older_than_seconds`` whose task left the
        outbox: a broker that lost its messages (a Redis restarted without persistence, a publish
        the broker never confirmed) would otherwise leave them waiting for their result deadline.
        A duplicate task is harmless (the first worker to claim the version analyses it); a task
        still waiting in the outbox (the broker is down) is not duplicated. The history says so.

        Returns:
            How many versions were queued again.
        """
        cutoff = now - timedelta(seconds=older_than_seconds)
        with self._database.session() as session:
            waiting = {
                p["study_version_id"] for p in queries.pending_task_payloads(session, messages.ANALYSE_STUDY)
            }
            requeued = 0
            for version in queries.queued_since_before(session, cutoff):
                if version.id in waiting:
                    continue
                why = (
                    f"queued again: no worker took it in {older_than_seconds:.0f} s (a lost broker message, "
                    "or a backlog)"
                )
                if store.transition(session, version.id, StudyState.QUEUED, StudyState.QUEUED, now, why):
                    requeued += self._enqueue(session, version, now)
        if requeued:
            logger.warning("queued %d study version(s) again that no worker took in time", requeued)
        return requeued

    def sweep(self, now: datetime | None = None) -> SweepResult:
        """One pass: complete due versions, withdraw verdicts a later version replaces, expire late
        ones, reclaim abandoned ones, publish."""
        now = now or self._database.now()
        completed = self._complete_due(now)
        with self._database.session() as session:
            withdrawals.supersede_older_versions(session, now)
        expired, requeued = self._expire_and_reclaim(now)
        published = self._publisher.publish_due(now)
        return SweepResult(completed, expired, requeued, published)

    def _complete_due(self, now: datetime) -> int:
        completed = 0
        with self._database.session() as session:
            receiving = [v.id for v in queries.versions_in(session, StudyState.RECEIVING)]
        for version_id in receiving:
            with self._database.session() as session:
                # Locked (PostgreSQL) as the receivers lock it: no instance joins the version between
                # the read of its instances below and its completion.
                version = session.get(StudyVersion, version_id, with_for_update=True)
                if version is None or version.state != StudyState.RECEIVING:
                    continue
                completed += self._complete_if_due(session, version, now)
        return completed

    def _complete_if_due(self, session: Session, version: StudyVersion, now: datetime) -> int:
        decision = routing.route(self._config, instance_facts(session, version))
        why = self._why_complete(version, decision, now)
        if why is None or not store.transition(
            session, version.id, StudyState.RECEIVING, StudyState.COMPLETE, now, why, completed_at=now
        ):
            return 0
        if isinstance(decision, routing.Route):
            store.mark_routed(session, version.study_id, [i.sop_instance_uid for i in decision.analysed])
        if isinstance(decision, routing.Unrouted) and decision.pipeline is not None:
            reason = f"{decision.reason}; {self._config.pipelines[decision.pipeline].conservative_reading}"
            store.transition(
                session, version.id, StudyState.COMPLETE, StudyState.NOT_ANALYSED, now, reason,
                pipeline=decision.pipeline,
            )  # fmt: skip
            logger.info("study version %d not analysed: %s", version.id, reason)
            return 1
        if isinstance(decision, routing.Unrouted) and not version.study.conflict:
            store.transition(
                session, version.id, StudyState.COMPLETE, StudyState.IGNORED, now, decision.reason
            )
            logger.info("study version %d ignored: %s", version.id, decision.reason)
            return 1
        gated: routing.Route | routing.NotAnalysed = (
            routing.NotAnalysed(CONFLICT)
            if version.study.conflict or isinstance(decision, routing.Unrouted)
            else routing.gate(self._config, decision, self._intended_uses.get(decision.pipeline))
        )
        removed = queries.removed_originals(session, version)
        if isinstance(gated, routing.Route) and removed:
            gated = routing.NotAnalysed(
                f"{removed} earlier image(s) of the study were removed from storage by retention; "
                "a result on the rest would judge part of the study"
            )
        if isinstance(gated, routing.NotAnalysed):
            self._not_analysed(session, version, decision, gated.reason, now)
            return 1
        due = now + timedelta(seconds=self._config.pipelines[gated.pipeline].result_deadline_seconds)
        store.transition(
            session, version.id, StudyState.COMPLETE, StudyState.QUEUED, now,
            f"routed by rule '{gated.rule}'", pipeline=gated.pipeline, result_due_at=due,
        )  # fmt: skip
        store.supersede_queued_before(session, version, now)
        self._enqueue(session, version, now, gated)
        logger.info("study version %d queued for %s (%s)", version.id, gated.pipeline, why)
        return 1

    def _not_analysed(
        self,
        session: Session,
        version: StudyVersion,
        decision: routing.Route | routing.Unrouted,
        why: str,
        now: datetime,
    ) -> None:
        """Take a study the gate stopped down the conservative path; a routed one's PACS hears why."""
        if isinstance(decision, routing.Unrouted):
            store.transition(session, version.id, StudyState.COMPLETE, StudyState.NOT_ANALYSED, now, why)
            logger.info("study version %d not analysed: %s", version.id, why)
            return
        reason = f"{why}; {self._config.pipelines[decision.pipeline].conservative_reading}"
        store.transition(
            session, version.id, StudyState.COMPLETE, StudyState.NOT_ANALYSED, now, reason,
            pipeline=decision.pipeline,
        )  # fmt: skip
        report = messages.ReportNotAnalysed(**self._payload(version, decision).model_dump(), reason=reason)
        store.enqueue(session, messages.REPORT_NOT_ANALYSED, report.model_dump(mode="json"), now)
        logger.info("study version %d not analysed: %s", version.id, reason)

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

    def _enqueue(
        self,
        session: Session,
        version: StudyVersion,
        now: datetime,
        decision: routing.Route | None = None,
    ) -> bool:
        """Write the version's analysis task to the outbox; False if it went conservative instead."""
        if decision is None:  # re-queue: the routing is re-derived from the stored facts
            routed = routing.route(self._config, instance_facts(session, version))
            if not isinstance(routed, routing.Route):  # the rules changed since it was queued
                store.transition(
                    session, version.id, (StudyState.QUEUED, StudyState.ANALYSING), StudyState.NOT_ANALYSED,
                    now, f"routing changed while it was queued: {routed.reason}",
                )  # fmt: skip
                return False
            decision = routed
        payload = self._payload(version, decision)
        store.enqueue(session, messages.ANALYSE_STUDY, payload.model_dump(mode="json"), now)
        return True

    @staticmethod
    def _payload(version: StudyVersion, decision: routing.Route) -> messages.AnalyseStudy:
        return messages.AnalyseStudy(
            study_version_id=version.id,
            study_instance_uid=version.study.study_instance_uid,
            version=version.number,
            pipeline=decision.pipeline,
            instances=tuple(
                messages.InstanceRef(
                    sop_instance_uid=i.sop_instance_uid,
                    sop_class_uid=i.sop_class_uid,
                    storage_key=i.storage_key,
                    sha256=i.sha256,
                )
                for i in decision.analysed
            ),
            skipped=decision.skipped,
        )

    def _expire_and_reclaim(self, now: datetime) -> tuple[int, int]:
        expired = requeued = 0
        with self._database.session() as session:
            for version in queries.versions_in(session, StudyState.QUEUED, StudyState.ANALYSING):
                if version.result_due_at is not None and now >= version.result_due_at:
                    expired += self._expire(session, version, now)
                elif (
                    version.state == StudyState.ANALYSING
                    and version.claimed_at is not None
                    and now >= version.claimed_at + self._lease
                ):
                    claims = queries.times_in(session, version.id, StudyState.ANALYSING)
                    if claims >= self._max_attempts:
                        why = f"analysis failed: the worker was lost {claims} times (killed or hung)"
                        expired += self._give_up(session, version, StudyState.ANALYSING, why, now)
                    elif store.transition(
                        session, version.id, StudyState.ANALYSING, StudyState.QUEUED, now,
                        "worker lost while analysing; queued again", claimed_at=None,
                    ):  # fmt: skip
                        requeued += self._enqueue(session, version, now)
        return expired, requeued

    def _give_up(
        self,
        session: Session,
        version: StudyVersion,
        expected: StudyState | tuple[StudyState, ...],
        why: str,
        now: datetime,
    ) -> int:
        """No result will come: NOT ANALYSED with the conservative reading, and the PACS is told so
        (the NOT ANALYSED SR and summary image), not only the database."""
        config = self._config.pipelines.get(Pipeline(version.pipeline)) if version.pipeline else None
        reason = f"{why}; {config.conservative_reading if config else 'conservative reading'}"
        if not store.transition(session, version.id, expected, StudyState.NOT_ANALYSED, now, reason):
            return 0
        routed = routing.route(self._config, instance_facts(session, version))
        if isinstance(routed, routing.Route):
            report = messages.ReportNotAnalysed(**self._payload(version, routed).model_dump(), reason=reason)
            store.enqueue(session, messages.REPORT_NOT_ANALYSED, report.model_dump(mode="json"), now)
        logger.warning("study version %d not analysed: %s", version.id, why)
        return 1

    def _expire(self, session: Session, version: StudyVersion, now: datetime) -> int:
        why = "no result before the result deadline"
        return self._give_up(session, version, (StudyState.QUEUED, StudyState.ANALYSING), why, now)
