"""Results to the PACS: every persisted delivery stored by C-STORE, with backoff and a bound."""

from __future__ import annotations

import logging
import ssl
from datetime import datetime
from pathlib import Path

from delivery.scu import client_tls_context, echo, send
from triage.periodic import PeriodicThread
from triage.records import queries, results, store
from triage.records.db import Database, utcnow
from triage.records.tables import PACS, PEER_CHECK_SECONDS
from triage.settings import DicomPeer, Settings

logger = logging.getLogger(__name__)


class Deliverer:
    """Stores finished results at the PACS from the persisted deliveries, with backoff and a bound.

    A study counts as REPORTED only when the PACS acknowledged all its objects. After
    ``max_attempts`` failures a delivery is FAILED (terminal, visible) and an ANALYSED study goes
    back to the conservative path, since no reader can see what triage concluded.
    """

    def __init__(
        self,
        database: Database,
        results_dir: Path,
        pacs: DicomPeer,
        calling_ae_title: str,
        max_attempts: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._tls = tls
        self._database = database
        self._results_dir = results_dir
        self._pacs = pacs
        self._calling = calling_ae_title
        self._max_attempts = max_attempts

    def deliver_due(self, now: datetime, limit: int = 50) -> int:
        """Try every due delivery once; return how many the PACS acknowledged."""
        with self._database.session() as session:
            due = [(d.id, d.storage_key) for d in queries.due_deliveries(session, now, limit)]
        if not due:
            return 0
        sent = send([self._results_dir / key for _, key in due], self._pacs, self._calling, self._tls)
        by_path = {str(r.path): r for r in sent}
        delivered = 0
        with self._database.session() as session:
            for delivery_id, key in due:
                result = by_path.get(str(self._results_dir / key))
                ok = result is not None and result.ok
                error = "" if ok else (result.detail if result else "not sent")
                status = f" (status 0x{result.status:04X})" if result and result.status is not None else ""
                store.record_delivery(session, delivery_id, ok, f"{error}{status}", now, self._max_attempts)
                delivered += ok
        if delivered < len(due):
            logger.warning(
                "%d of %d result object(s) not yet accepted by %s", len(due) - delivered, len(due), self._pacs
            )
        return delivered


def check_reachable(settings: Settings, database: Database) -> bool:
    """C-ECHO the PACS and record what was found, for the web app (which does no DICOM networking)."""
    assert settings.pacs is not None
    status = echo(settings.pacs, settings.ae_title, 5.0, client_tls_context(settings))
    reachable = status == 0
    detail = (
        "C-ECHO succeeded"
        if reachable
        else "no association"
        if status is None
        else f"C-ECHO status 0x{status:04X}"
    )
    with database.session() as session:
        results.record_peer_status(session, PACS, reachable, detail, utcnow())
    return reachable


def start(settings: Settings, database: Database) -> list[PeriodicThread]:
    """Start delivering results to the configured PACS, and checking that it answers, in background
    threads (none without a PACS)."""
    if settings.pacs is None:
        logger.warning("TRIAGE_PACS is not set: results stay in the database and are not sent anywhere")
        return []
    deliverer = Deliverer(
        database,
        settings.results_dir,
        settings.pacs,
        settings.ae_title,
        settings.delivery_max_attempts,
        client_tls_context(settings),
    )
    threads = [
        PeriodicThread(
            "pacs-delivery", lambda: deliverer.deliver_due(utcnow()), settings.monitor_interval_seconds
        ),
        PeriodicThread("pacs-check", lambda: check_reachable(settings, database), PEER_CHECK_SECONDS),
    ]
    for thread in threads:
        thread.start()
    return threads
