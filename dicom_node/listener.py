"""The listener process: DICOM server, study monitor and outbox publisher over one database."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pynetdicom.transport import ThreadedAssociationServer

from dicom_node import dispatch, routing, scp
from dicom_node.handlers import StorageHandlers, StoragePaths
from dicom_node.scu import Deliverer
from dicom_node.studies import StudyMonitor
from triage.settings import Settings
from worklist.db import Database, migrate, utcnow

logger = logging.getLogger(__name__)


class PeriodicThread(threading.Thread):
    """Calls ``action`` every interval until stopped; a failing call is logged and tried again."""

    def __init__(self, name: str, action: Callable[[], object], interval_seconds: float) -> None:
        super().__init__(name=name, daemon=True)
        self._action = action
        self._interval = interval_seconds
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self._interval):
            try:
                self._action()
            except Exception:  # process boundary: the loop must outlive a database hiccup
                logger.exception("%s pass failed; retrying in %.1f s", self.name, self._interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


class Listener:
    """Everything the ``triage listener`` process runs; ``start`` returns once it is serving."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        migrate(settings.resolved_database_url)
        self.database = Database(settings.resolved_database_url)
        for folder in (settings.storage_dir, settings.quarantine_dir, settings.incoming_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.monitor = StudyMonitor(
            self.database,
            routing.RoutingConfig.load(settings.routing_file),
            dispatch.OutboxPublisher(self.database, dispatch.make_celery(settings)),
            settings.analysis_lease_seconds,
        )
        self.handlers = StorageHandlers(
            self.database, StoragePaths(settings.storage_dir, settings.quarantine_dir, settings.incoming_dir)
        )
        self._server: ThreadedAssociationServer | None = None
        self._monitor_thread: PeriodicThread | None = None
        self._delivery_thread: PeriodicThread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "the listener is not started"
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Recover unfinished work, then serve DICOM and run the monitor in background threads."""
        self.monitor.recover(self.settings.incoming_dir)
        self._server = scp.start_listener(self.settings, self.handlers)
        self._monitor_thread = PeriodicThread(
            "study-monitor", self.monitor.sweep, self.settings.monitor_interval_seconds
        )
        self._monitor_thread.start()
        if self.settings.pacs is not None:
            deliverer = Deliverer(
                self.database,
                self.settings.results_dir,
                self.settings.pacs,
                self.settings.ae_title,
                self.settings.delivery_max_attempts,
                scp.client_tls_context(self.settings),
            )
            self._delivery_thread = PeriodicThread(
                "pacs-delivery",
                lambda: deliverer.deliver_due(utcnow()),
                self.settings.monitor_interval_seconds,
            )
            self._delivery_thread.start()
        else:
            logger.warning("TRIAGE_PACS is not set: results stay in the database and are not sent anywhere")

    def stop(self) -> None:
        """Stop accepting associations, finish the monitor's pass, close the database."""
        if self._server is not None:
            self._server.shutdown()
        if self._monitor_thread is not None:
            self._monitor_thread.stop()
        if self._delivery_thread is not None:
            self._delivery_thread.stop()
        self.database.dispose()
        logger.info("DICOM listener stopped")
