"""The DICOM listener: the server, the study monitor and the outbox publisher over one database.

The process that runs it (``triage listener``) also runs PACS delivery (``delivery.pacs``) beside it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pydantic import ValidationError
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node import routing, scp
from dicom_node.capacity import DiskGuard
from dicom_node.commitment import CommitmentReports
from dicom_node.duplicates import DuplicateComparer
from dicom_node.handlers import StorageHandlers, StoragePaths
from dicom_node.reconcile import Reconciler
from dicom_node.retention import Retention
from dicom_node.studies import StudyMonitor
from triage.cards import IntendedUse, read_card
from triage.periodic import PeriodicThread
from triage.pipelines import Pipeline
from triage.records import audit_chain, commitments, deliveries, outbox, withdrawals
from triage.records.db import Database, migrate
from triage.records.leadership import Leadership
from triage.records.security import SecurityLog
from triage.settings import Settings

logger = logging.getLogger(__name__)

# How often the leader fails result objects past their delivery deadline that no attempt judged, and
# queues again the rejections a failed withdrawal task left unsent (two indexed queries).
SAFETY_NET_SECONDS = 60.0
HOUSEKEEPING_SECONDS = 1.0
ORPHAN_FOLDERS_PER_STEP = 100  # study folders per housekeeping step


def intended_uses(models_dir: Path) -> dict[Pipeline, IntendedUse]:
    """Each pipeline's intended use, from the model card in ``models_dir`` (the gate reads it; the
    worker checks the card of the model it actually runs again)."""
    found = {}
    for pipeline in Pipeline:
        try:
            found[pipeline] = read_card(models_dir / pipeline).intended_use
        except (OSError, ValueError, ValidationError) as error:
            logger.warning(
                "no model card for %s in %s (%s): the gate applies the routing rules only",
                pipeline,
                models_dir,
                type(error).__name__,
            )
    return found


class Listener:
    """Everything the ``triage listener`` process runs; ``start`` returns once it is serving.

    Every listener receives. One of those over a database leads (``Leadership``): it recovers
    after a crash, runs the study monitor, reconciles leftovers and delivers results. A listener
    that does not lead tries again at each pass, and takes over when the leader goes.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        migrate(settings.resolved_database_url)
        self.database = Database(settings.resolved_database_url)
        for folder in (settings.storage_dir, settings.quarantine_dir, settings.incoming_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.monitor = StudyMonitor(
            self.database,
            routing.RoutingConfig.load(settings.routing_file),
            outbox.OutboxPublisher(self.database, outbox.make_celery(settings)),
            settings.analysis_lease_seconds,
            intended_uses(settings.models_dir),
            settings.analysis_max_attempts,
        )
        self.handlers = StorageHandlers(
            self.database,
            StoragePaths(settings.storage_dir, settings.quarantine_dir, settings.incoming_dir),
            DiskGuard(
                settings.storage_dir,
                settings.storage_min_free_bytes,
                settings.quarantine_dir,
                settings.quarantine_quota_bytes,
            ),
            settings.max_instance_bytes,
            settings.fault_kill_listener_at,
        )
        self.duplicates = DuplicateComparer(
            self.database, settings.storage_dir, settings.quarantine_dir, settings.home
        )
        self.retention = Retention(self.database, settings.storage_dir, settings.retain_originals_days)
        self.security = SecurityLog(self.database)
        bounds = commitments.bounds_of(settings)
        self.reports = CommitmentReports(self.database, bounds) if bounds is not None else None
        self.leadership = Leadership(self.database, settings.home / "leader.lock")
        self.reconciler = Reconciler(
            self.database,
            (settings.incoming_dir, settings.storage_dir, settings.quarantine_dir, settings.results_dir),
            settings.leftover_grace_seconds,
        )
        self._recovered = False
        self._next_reconcile = 0.0
        self._next_seal = 0.0
        self._next_safety_net = 0.0
        self._server: ThreadedAssociationServer | None = None
        self._monitor_thread: PeriodicThread | None = None
        self._housekeeping_thread: PeriodicThread | None = None
        self._walking = False

    @property
    def port(self) -> int:
        assert self._server is not None, "the listener is not started"
        return int(self._server.server_address[1])

    @property
    def leading(self) -> bool:
        """Whether this process leads now (cheap: no query; the monitor's pass checks the lock)."""
        return self.leadership.held

    def start(self) -> None:
        """Recover unfinished work if this process leads, then serve DICOM and run the monitor."""
        if self.leadership.try_acquire():
            self._recover()
        else:
            logger.info("another process leads over this database: this listener receives only")
        self._server = scp.start_listener(self.settings, self.handlers, self.security, self.reports)
        self._monitor_thread = PeriodicThread(
            "study-monitor", self._lead, self.settings.monitor_interval_seconds
        )
        self._monitor_thread.start()
        self._housekeeping_thread = PeriodicThread("housekeeping", self._housekeep, HOUSEKEEPING_SECONDS)
        self._housekeeping_thread.start()

    def _recover(self) -> None:
        self.reconciler.receptions()
        self.monitor.recover()
        self._recovered = True

    def _lead(self) -> None:
        """One pass of the leader's work; nothing when another process leads."""
        if not self.leadership.try_acquire():
            self._recovered = False
            return
        if not self._recovered:
            logger.info("this listener took over the lead: recovering")
            self._recover()
        self.duplicates.run()  # before the sweep: a re-sent image lifts its conflict before completion
        self.monitor.sweep()
        self.reconciler.receptions()
        if time.monotonic() >= self._next_seal:
            self._next_seal = time.monotonic() + audit_chain.SEAL_INTERVAL_SECONDS
            self._seal_audit()
        if time.monotonic() >= self._next_safety_net:
            self._next_safety_net = time.monotonic() + SAFETY_NET_SECONDS
            self._safety_net()

    def _housekeep(self) -> None:
        """The leader's slow chores, in a thread of their own so that the study monitor never waits
        on them: every ``reconcile_interval_seconds`` a walk of storage for orphans starts (a few
        folders a step, a step a second), with result staging and retention."""
        if not self.leading:
            return
        if not self._walking:
            if time.monotonic() < self._next_reconcile:
                return
            self._next_reconcile = time.monotonic() + self.settings.reconcile_interval_seconds
            staging = self.reconciler.staging()
            removed = self.retention.run()
            logger.info(
                "housekeeping: %d staging file(s) removed, %d original(s) past retention", staging, removed
            )
        _, done = self.reconciler.orphans_step(ORPHAN_FOLDERS_PER_STEP)
        self._walking = not done

    def _safety_net(self) -> None:
        """Fail result objects past their delivery deadline that no attempt judged (their versions go
        conservative), queue again the rejection of what the PACS holds of a withdrawn verdict
        where the task that should have sent it failed or was lost, and queue again the analysis of
        versions no worker took in ``queued_republish_seconds`` (a broker that lost the message)."""
        with self.database.session() as session:
            now = self.database.now()
            overdue = deliveries.fail_overdue(session, now, self.settings.delivery_deadline_seconds)
            queued = withdrawals.queue_unrejected(session, now)
        self.monitor.requeue_stale(now, self.settings.queued_republish_seconds)
        if overdue:
            logger.warning("%d result object(s) missed their delivery deadline", overdue)
        if queued:
            logger.warning("queued the rejection of %d withdrawn verdict(s) again", queued)

    def _seal_audit(self) -> None:
        """Seal the audit events that are ready into the chain (a batch per pass)."""
        with self.database.session() as session:
            sealed = audit_chain.seal(session, self.database.now())
        if sealed is not None:
            logger.debug("sealed audit events %d..%d", sealed.first_event_id, sealed.last_event_id)

    def stop(self) -> None:
        """Stop accepting associations, finish the monitor's pass, give up the lead, close."""
        if self._server is not None:
            self._server.shutdown()
        for thread in (self._monitor_thread, self._housekeeping_thread):
            if thread is not None:
                thread.stop()
        self.handlers.spools.uninstall()
        self.handlers.receiving.close()
        self.security.close()
        self.leadership.release()
        self.database.dispose()
        logger.info("DICOM listener stopped")
