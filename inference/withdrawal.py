"""The body of ``triage.withdraw_result``: the objects that supersede and reject a withdrawn verdict.

- A NOT ANALYSED SR, built as every triage SR is (TID 1500, both SR classes for the PACS to choose
  from), whose Predecessor Documents Sequence names the SR the PACS acknowledged (PS3.3 C.17.2):
  a viewer showing the latest version of the document shows "not analysed, read as usual".
- An IHE IOCM rejection note: a Key Object Selection document titled (113037, DCM, "Rejected for
  Patient Safety Reasons") that references every object of the version the PACS acknowledged, so
  an IOCM-capable PACS hides or removes them.

Both are derived from the study version, so a re-run builds the same objects (same UIDs).
"""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
from pydicom import Dataset, dcmread
from pydicom.sr.coding import Code
from sqlalchemy import select

from inference.reports import SR_CLASSES, ReportWriter, breast_report, fracture_report, report_uid
from triage import __version__
from triage.imaging import blank_malformed_dates
from triage.messages import WithdrawResult
from triage.outcomes import ModelIdentity, not_analysed
from triage.pipelines import Pipeline
from triage.records import queries, results
from triage.records.db import Database
from triage.records.results import ResultObject
from triage.records.tables import Delivery, DeliveryState, StudyVersion
from triage.records.withdrawals import WITHDRAWAL_KINDS

logger = logging.getLogger(__name__)

REJECTED_FOR_PATIENT_SAFETY = Code("113037", "DCM", "Rejected for Patient Safety Reasons")
WITHDRAWAL = ModelIdentity("triage result withdrawal", __version__, "none (no model)")


def rejection_note(
    rejected: list[Dataset], study_instance_uid: str, version: int
) -> hd.ko.KeyObjectSelectionDocument:
    """The IOCM rejection note for ``rejected`` (all of one study)."""

    def uid(kind: str) -> str:
        return report_uid(study_instance_uid, version, WITHDRAWAL.name, WITHDRAWAL.version, kind)

    return hd.ko.KeyObjectSelectionDocument(
        evidence=rejected,
        content=hd.ko.KeyObjectSelection(
            document_title=REJECTED_FOR_PATIENT_SAFETY,
            referenced_objects=rejected,
            description="triage withdrew this AI result; read the study as if triage had not seen it",
        ),
        series_instance_uid=uid("kos-series"),
        series_number=9903,
        sop_instance_uid=uid("kos"),
        instance_number=1,
        manufacturer="triage (open source)",
    )


class WithdrawResultTask:
    """Builds, keeps and queues the superseding SR and the rejection note of a withdrawn version."""

    def __init__(self, database: Database, storage_dir: Path, reports: ReportWriter | None) -> None:
        self._database = database
        self._storage_dir = storage_dir
        self._reports = reports

    def __call__(self, raw_payload: dict[str, object]) -> str:
        payload = WithdrawResult.model_validate(raw_payload)
        if self._reports is None:
            return "no-pacs"
        with self._database.session() as session:
            version = session.get(StudyVersion, payload.study_version_id)
            if version is None:
                return "unknown-version"
            deliveries = list(session.scalars(select(Delivery).where(Delivery.version_id == version.id)))
            if any(d.kind in WITHDRAWAL_KINDS for d in deliveries):
                return "already-withdrawn"
            delivered = [
                (d.kind, d.sent_storage_key or d.storage_key)
                for d in deliveries
                if d.state == DeliveryState.DELIVERED
            ]
            sources = [i.storage_key for i in queries.instances_of(session, version)]
            pipeline, number = Pipeline(version.pipeline), version.number
            study_uid = version.study.study_instance_uid
        objects = self._build(payload.reason, pipeline, study_uid, number, delivered, sources)
        now = self._database.now()
        with self._database.session() as session:
            for written in objects:
                results.add_delivery(session, payload.study_version_id, written, now)
        logger.info("version %d withdrawn: %d object(s) queued", payload.study_version_id, len(objects))
        return "withdrawn"

    def _build(
        self,
        reason: str,
        pipeline: Pipeline,
        study_uid: str,
        number: int,
        delivered: list[tuple[str, str]],
        source_keys: list[str],
    ) -> list[ResultObject]:
        assert self._reports is not None
        results_dir = self._reports.results_dir
        withdrawn = [(kind, dcmread(results_dir / key, stop_before_pixels=True)) for kind, key in delivered]
        objects = []
        previous_sr = next((ds for kind, ds in withdrawn if kind == "sr"), None)
        if previous_sr is not None:  # the PACS has a verdict: a newer document says "not analysed"
            sources = [dcmread(self._storage_dir / key, stop_before_pixels=True) for key in source_keys]
            for source in sources:
                blank_malformed_dates(source)
            build = fracture_report if pipeline is Pipeline.FRACTURE else breast_report
            outcome = not_analysed(pipeline, f"result withdrawn: {reason}")
            srs = [
                build(sources, outcome, WITHDRAWAL, number, outcome.reason, c, supersedes=previous_sr)  # type: ignore[arg-type]
                for c in SR_CLASSES
            ]
            keys = [self._reports.keep(study_uid, ds) for ds in srs]
            objects.append(ResultObject("withdrawal-sr", str(srs[0].SOPInstanceUID), keys[0], keys[1]))
        note = rejection_note([ds for _, ds in withdrawn], study_uid, number)
        objects.append(ResultObject("kos", str(note.SOPInstanceUID), self._reports.keep(study_uid, note)))
        return objects
