"""Results to the RIS (or the emergency department's record) as HL7 ORU^R01 over MLLP.

When a study version enters REPORTED (its results acknowledged by the PACS, so its verdict acts) or
NOT ANALYSED (the conservative path, with the reason), a message is built and persisted; a later
change about the same study (a withdrawn verdict, a later version) goes as a correction. The
leader sends them in order per study, each until the RIS acknowledges it with AA; AE, AR or no
answer back off and, past the delivery bounds, fail for good: visible on the study page, in the
metrics and in the audit. A message never gates a verdict: the PACS's acknowledgement does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from hl7apy.exceptions import HL7apyException

from delivery import mllp
from delivery.oru import CORRECTION, PRELIMINARY, Header, Patient, Reported, oru_message
from triage.periodic import PeriodicThread
from triage.pipelines import Pipeline
from triage.records import hl7_messages
from triage.records.db import Database
from triage.records.tables import Hl7Cursor
from triage.settings import Settings
from triage.values import Hl7Peer

logger = logging.getLogger(__name__)


class RisSender:
    """Queues a message per final state change and sends the due ones to one RIS."""

    def __init__(self, database: Database, settings: Settings, peer: Hl7Peer) -> None:
        self._database = database
        self._peer = peer
        self._facility = settings.hl7_sending_facility
        self._bounds = (settings.delivery_max_attempts, settings.delivery_deadline_seconds)
        self._timeout = settings.network_timeout_seconds
        self._cursor = f"hl7:{peer.application}"[:32]
        self._pipelines = [str(p) for p in settings.hl7_ris_pipelines]

    def queue_new(self, now: datetime) -> int:
        """Build and persist the messages of the final state changes not yet reported."""
        with self._database.session() as session:
            changes, reached = hl7_messages.changes_to_report(session, self._cursor, self._pipelines)
            for row in changes:
                change = hl7_messages.described(session, row)  # after the messages queued before it
                control_id = f"TRIAGE-{row.id}"
                try:
                    message, failed = self._message(change, control_id, now), ""
                except (HL7apyException, ValueError) as error:  # visible, never blocking the others
                    # The type only: hl7apy's message quotes the value, which may be patient data.
                    message, failed = "", f"could not be built ({type(error).__name__})"
                hl7_messages.add_message(session, change, control_id, message, now, failed)
            if session.get(Hl7Cursor, self._cursor) is not None:
                hl7_messages.move_cursor(session, self._cursor, reached, now)
        return len(changes)

    def _message(self, change: hl7_messages.Change, control_id: str, now: datetime) -> str:
        study, result = change.study, change.result
        header = Header(
            control_id,
            self._facility,
            self._peer.application,
            CORRECTION if change.correction else PRELIMINARY,
            now,
        )
        patient = Patient(
            study.patient_id, study.issuer_of_patient_id, study.patient_name, study.patient_birth_date
        )
        pipeline = change.version.pipeline
        reported = Reported(
            study_instance_uid=study.study_instance_uid,
            accession_number=study.accession_number,
            study_date=study.study_date,
            pipeline=Pipeline(pipeline) if pipeline else None,
            verdict=change.verdict,
            outcome=change.acting,
            reason=change.change.reason,
            model_name=result.model_name if result else "",
            model_version=result.model_version if result else "",
            sr_instance_uid=change.sr_instance_uid,
        )
        return oru_message(header, patient, reported)

    def send_due(self, now: datetime) -> int:
        """Send every due message once, stopping at the first that gets no answer at all (the RIS is
        down or hangs: the others wait for the next pass, their tries unspent); return how many the
        RIS accepted."""
        with self._database.session() as session:
            due = [(m.id, m.message, m.control_id) for m in hl7_messages.due_messages(session, now)]
        accepted, tried = 0, 0
        for message_id, message, control_id in due:
            answer = mllp.send(self._peer, message, control_id, self._timeout)
            with self._database.session() as session:
                hl7_messages.record_answer(session, message_id, answer.code, answer.detail, now, self._bounds)
            accepted, tried = accepted + answer.accepted, tried + 1
            if not answer.code:  # unreachable or silent: the others would wait as long for nothing
                break
        if accepted < tried:
            logger.warning(
                "%d of %d HL7 message(s) not yet accepted by %s", tried - accepted, tried, self._peer
            )
        return accepted

    def tick(self, now: datetime | None = None) -> int:
        """Queue what is new and send what is due; return how many the RIS accepted."""
        now = now or self._database.now()
        self.queue_new(now)
        return self.send_due(now)


def start(settings: Settings, database: Database, leading: Callable[[], bool]) -> list[PeriodicThread]:
    """Report results to the RIS in a background thread while ``leading()`` (none without one)."""
    if settings.hl7_ris is None:
        return []
    sender = RisSender(database, settings, settings.hl7_ris)
    thread = PeriodicThread(
        "hl7-ris", lambda: sender.tick() if leading() else 0, settings.monitor_interval_seconds
    )
    thread.start()
    logger.info("reporting results to the RIS at %s over HL7 MLLP", settings.hl7_ris)
    return [thread]
