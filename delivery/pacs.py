"""Results to the PACS: every persisted delivery stored by C-STORE, with backoff and a bound."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from delivery.scu import Outgoing, client_tls_context, echo, request_commitment, sop_reference, store_objects
from triage.periodic import PeriodicThread
from triage.records import commitments, deliveries, queries, results, withdrawals
from triage.records.db import Database
from triage.records.tables import PACS, PEER_CHECK_SECONDS, Delivery
from triage.settings import Settings
from triage.values import DicomPeer

logger = logging.getLogger(__name__)


class Deliverer:
    """Stores finished results at the PACS from the persisted deliveries, with backoff and bounds.

    Every attempt is recorded, whatever happens, per object: one object's failure never holds up
    another study's. A study counts as REPORTED only when the PACS acknowledged all its objects, the
    summary image before the SR. A delivery fails for good (visible, audited; the study goes back to
    the conservative path) after ``max_attempts`` tries, after ``deadline_seconds``, or at once when the
    PACS accepts none of its SOP classes.
    """

    def __init__(
        self,
        database: Database,
        results_dir: Path,
        pacs: DicomPeer,
        calling_ae_title: str,
        bounds: tuple[int, float],
        tls: ssl.SSLContext | None = None,
        timeout_seconds: float = 30.0,
        leading: Callable[[], bool] = lambda: True,
        objects_per_check: int = 5,
        commitment: commitments.Bounds | None = None,
    ) -> None:
        self._commitment = commitment
        self._leading = leading
        self._objects_per_check = objects_per_check
        self._tls = tls
        self._database = database
        self._results_dir = results_dir
        self._pacs = pacs
        self._calling = calling_ae_title
        self._max_attempts, self._deadline_seconds = bounds
        self._timeout = timeout_seconds

    def _outgoing(self, delivery: Delivery) -> Outgoing:
        alternates = (
            (self._results_dir / delivery.alternate_storage_key,) if delivery.alternate_storage_key else ()
        )
        return Outgoing(self._results_dir / delivery.storage_key, alternates)

    def deliver_due(self, now: datetime, limit: int = 50) -> int:
        """Try every due delivery once, a few objects at a time, for as long as this process leads
        (one that lost the lead mid-pass stops within ``objects_per_check`` objects, so two leaders
        never deliver for a whole pass); return how many the PACS acknowledged."""
        with self._database.session() as session:
            due = [(d.id, self._outgoing(d)) for d in queries.due_deliveries(session, now, limit)]
        delivered, tried = 0, 0
        for start in range(0, len(due), self._objects_per_check):
            if not self._leading():
                logger.warning(
                    "no longer leading: %d due result object(s) left to the leader", len(due) - start
                )
                break
            chunk = due[start : start + self._objects_per_check]
            delivered += self._deliver(chunk, now)
            tried += len(chunk)
        if delivered < tried:
            logger.warning(
                "%d of %d result object(s) not yet accepted by %s", tried - delivered, tried, self._pacs
            )
        return delivered

    def _deliver(self, due: list[tuple[int, Outgoing]], now: datetime) -> int:
        sent = store_objects([item for _, item in due], self._pacs, self._calling, self._tls, self._timeout)
        delivered = 0
        with self._database.session() as session:
            for (delivery_id, _), result in zip(due, sent, strict=True):
                status = f" (status 0x{result.status:04X})" if result.status is not None else ""
                key = str(result.sent.relative_to(self._results_dir)) if result.ok and result.sent else ""
                attempt = deliveries.Attempt(result.ok, f"{result.detail}{status}", result.permanent, key)
                deliveries.record_delivery(
                    session,
                    delivery_id,
                    attempt,
                    now,
                    self._max_attempts,
                    self._deadline_seconds,
                    commitment=self._commitment is not None,
                )
                delivered += result.ok
        return delivered

    def commit_due(self, now: datetime) -> int:
        """Ask the PACS to commit what it acknowledged (storage commitment, when configured), and ask
        again where a report is overdue; return how many requests the PACS took."""
        bounds = self._commitment
        if bounds is None:
            return 0
        with self._database.session() as session:
            commitments.expire_overdue(session, now, bounds)
        with self._database.session() as session:
            due = [
                (c.id, c.transaction_uid, self._references(session, c.version_id))
                for c in commitments.due_requests(session, now)
            ]
        requested = 0
        for commitment_id, transaction_uid, references in due:
            if not self._leading():
                break
            accepted, detail = request_commitment(
                self._pacs, self._calling, transaction_uid, references, self._tls, self._timeout
            )
            with self._database.session() as session:
                commitments.record_request(session, commitment_id, accepted, detail, now, bounds)
            requested += accepted
        return requested

    def _references(self, session: Session, version_id: int) -> list[tuple[str, str]]:
        """(SOP Class UID, SOP Instance UID) of each object as the PACS took it (an alternate's class)."""
        return [
            sop_reference(self._results_dir / (d.sent_storage_key or d.storage_key))
            for d in withdrawals.acknowledged_objects(session, version_id)
        ]


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
        results.record_peer_status(session, PACS, reachable, detail, database.now())
    return reachable


def start(
    settings: Settings, database: Database, leading: Callable[[], bool] = lambda: True
) -> list[PeriodicThread]:
    """Start delivering results to the configured PACS, and checking that it answers, in background
    threads (none without a PACS). Only while ``leading()``: one process delivers, so two
    listeners over one database never send the same object at once."""
    if settings.pacs is None:
        logger.warning("TRIAGE_PACS is not set: results stay in the database and are not sent anywhere")
        return []
    deliverer = Deliverer(
        database,
        settings.results_dir,
        settings.pacs,
        settings.ae_title,
        (settings.delivery_max_attempts, settings.delivery_deadline_seconds),
        client_tls_context(settings),
        settings.dimse_timeout_seconds,
        leading,
        commitment=commitments.bounds_of(settings),
    )

    def deliver() -> int:
        now = database.now()
        delivered = deliverer.deliver_due(now)
        deliverer.commit_due(now)
        return delivered

    threads = [
        PeriodicThread("pacs-delivery", deliver, settings.monitor_interval_seconds),
        PeriodicThread("pacs-check", lambda: check_reachable(settings, database), PEER_CHECK_SECONDS),
    ]
    for thread in threads:
        thread.start()
    return threads
