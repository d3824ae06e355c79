"""The body of ``triage.withdraw_result``: the objects that supersede and reject a withdrawn verdict.

- A NOT ANALYSED SR, built as every triage SR is (TID 1500, both SR classes for the PACS to choose
  from), whose Predecessor Documents Sequence names the SR the PACS acknowledged (PS3.3 C.17.2):
  a viewer showing the latest version of the document shows "not analysed, read as usual".
- An IHE IOCM rejection note: a Key Object Selection document titled (113037, DCM, "Rejected for
  Patient Safety Reasons") that references every object of the version the PACS acknowledged, so
  an IOCM-capable PACS hides or removes them.

Both are built from the delivered objects' own headers, never from the study's images: those may be
gone by now (``retain_originals_days``). A re-run builds the same objects (same UIDs); the note's UID
follows the set of objects it rejects, so objects acknowledged later get a note of their own.
"""

from __future__ import annotations

import logging

import highdicom as hd
from pydicom import Dataset, dcmread
from pydicom.sr.coding import Code
from sqlalchemy import select

from inference.reports import SR_CLASSES, ReportWriter, breast_report, fracture_report
from inference.sr_content import report_uid
from triage import __version__
from triage.messages import WithdrawResult
from triage.outcomes import ModelIdentity, not_analysed
from triage.pipelines import Pipeline
from triage.records import results
from triage.records.db import Database
from triage.records.results import ResultObject
from triage.records.tables import Delivery, StudyVersion
from triage.records.withdrawals import acknowledged_objects, rejection_uid

logger = logging.getLogger(__name__)

REJECTED_FOR_PATIENT_SAFETY = Code("113037", "DCM", "Rejected for Patient Safety Reasons")
WITHDRAWAL = ModelIdentity("triage result withdrawal", __version__, "none (no model)")


# The Patient and General Study modules, copied from a withdrawn SR onto the evidence it names.
_PATIENT_AND_STUDY = (
    "SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip


def evidence_of(report: Dataset) -> list[Dataset]:
    """Headers of the images a delivered SR names as its evidence, rebuilt from the SR alone: enough
    for a report that supersedes it (no image region is drawn on them)."""
    found = []
    for study in report.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            for item in series.get("ReferencedSOPSequence", []):
                ds = Dataset()
                for keyword in _PATIENT_AND_STUDY:
                    if keyword in report:
                        setattr(ds, keyword, report[keyword].value)
                ds.SeriesInstanceUID = series.SeriesInstanceUID
                ds.SOPClassUID = item.ReferencedSOPClassUID
                ds.SOPInstanceUID = item.ReferencedSOPInstanceUID
                found.append(ds)
    return found


def rejection_note(
    rejected: list[Dataset], study_instance_uid: str, version: int
) -> hd.ko.KeyObjectSelectionDocument:
    """The IOCM rejection note for ``rejected`` (all of one study)."""
    uids = [str(ds.SOPInstanceUID) for ds in rejected]
    note = hd.ko.KeyObjectSelectionDocument(
        evidence=rejected,
        content=hd.ko.KeyObjectSelection(
            document_title=REJECTED_FOR_PATIENT_SAFETY,
            referenced_objects=rejected,
            description="triage withdrew this AI result; read the study as if triage had not seen it",
        ),
        series_instance_uid=report_uid(study_instance_uid, version, WITHDRAWAL.name, "", "kos-series"),
        series_number=9903,
        sop_instance_uid=rejection_uid(study_instance_uid, version, uids),
        instance_number=1,
        manufacturer="triage (open source)",
    )
    # TID 2010 rows 8-10: the referenced objects are IMAGE / COMPOSITE items without a concept name
    # (highdicom names them "Source", which PixelMed's template validator reports as an error).
    for item in note.ContentSequence:
        if item.ValueType in ("IMAGE", "COMPOSITE"):
            del item.ConceptNameCodeSequence
    return note


class WithdrawResultTask:
    """Builds, keeps and queues the superseding SR and the rejection note of a withdrawn version."""

    def __init__(self, database: Database, reports: ReportWriter | None) -> None:
        self._database = database
        self._reports = reports

    def __call__(self, raw_payload: dict[str, object]) -> str:
        payload = WithdrawResult.model_validate(raw_payload)
        if self._reports is None:
            return "no-pacs"
        with self._database.session() as session:
            version = session.get(StudyVersion, payload.study_version_id)
            if version is None:
                return "unknown-version"
            held = [
                (d.kind, d.sent_storage_key or d.storage_key)
                for d in acknowledged_objects(session, version.id)
            ]
            uids = [d.sop_instance_uid for d in acknowledged_objects(session, version.id)]
            pipeline, number = Pipeline(version.pipeline), version.number
            study_uid = version.study.study_instance_uid
            kinds = set(session.scalars(select(Delivery.kind).where(Delivery.version_id == version.id)))
            note_uid = rejection_uid(study_uid, number, uids)
            if not held or session.scalar(select(Delivery.id).where(Delivery.sop_instance_uid == note_uid)):
                return "already-withdrawn"
        objects = self._build(payload.reason, pipeline, study_uid, number, held, "withdrawal-sr" not in kinds)
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
        held: list[tuple[str, str]],
        supersede: bool,
    ) -> list[ResultObject]:
        assert self._reports is not None
        results_dir = self._reports.results_dir
        withdrawn = [(kind, dcmread(results_dir / key, stop_before_pixels=True)) for kind, key in held]
        objects = []
        previous_sr = next((ds for kind, ds in withdrawn if kind == "sr"), None)
        if (
            previous_sr is not None and supersede
        ):  # the PACS has a verdict: a newer document says "not analysed"
            sources = evidence_of(previous_sr) or [previous_sr]
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
