"""Storage commitment reports from the PACS (PS3.4 J.3.3, N-EVENT-REPORT), received by the listener:
the PACS answers a request on an association of its own, as most do (Orthanc among them).

Event type 1 says every referenced object is committed, 2 that some failed (Failed SOP Sequence,
each with its Failure Reason). The report is recorded by ``triage.records.commitments``, which
moves the study to REPORTED or sends the failed objects again.
"""

from __future__ import annotations

import logging

from pydicom import Dataset
from pynetdicom.dimse_primitives import N_EVENT_REPORT
from pynetdicom.events import Event
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from triage.records import commitments
from triage.records.db import Database

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
NO_SUCH_EVENT_TYPE = 0x0113
INVALID_ARGUMENT_VALUE = 0x0115


class CommitmentReports:
    """The bound N-EVENT-REPORT handler."""

    def __init__(self, database: Database, bounds: commitments.Bounds) -> None:
        self._database = database
        self._bounds = bounds

    def on_event_report(self, event: Event) -> tuple[int, Dataset | None]:
        request = event.request
        assert isinstance(request, N_EVENT_REPORT)
        if str(request.AffectedSOPClassUID) != StorageCommitmentPushModel:
            return PROCESSING_FAILURE, None
        if request.EventTypeID not in (1, 2):
            return NO_SUCH_EVENT_TYPE, None
        try:
            report = event.event_information
            transaction_uid = str(report.TransactionUID)
            committed = {str(i.ReferencedSOPInstanceUID) for i in report.get("ReferencedSOPSequence", [])}
            failed = {
                str(i.ReferencedSOPInstanceUID): int(i.get("FailureReason", PROCESSING_FAILURE))
                for i in report.get("FailedSOPSequence", [])
            }
        except (AttributeError, ValueError, TypeError, KeyError) as error:
            logger.warning("a storage commitment report that could not be read: %s", type(error).__name__)
            return INVALID_ARGUMENT_VALUE, None
        with self._database.session() as session:
            known = commitments.record_report(
                session, transaction_uid, committed, failed, self._database.now(), self._bounds
            )
        if not known:  # a late or repeated report of a request already settled: nothing to do
            logger.info("a storage commitment report for a transaction not awaited; ignored")
        logger.info("storage commitment report: %d committed, %d failed", len(committed), len(failed))
        return SUCCESS, None
