"""The objects that withdraw a verdict at the PACS, built from what the PACS was sent (the study's
images may be gone by then) and delivered to a real DICOM peer: the withdrawal that lands while a
result is on the wire, and the one that comes after retention removed the originals."""

import shutil

import pytest
from pydicom import dcmread
from sqlalchemy import select

from inference.reports import ReportWriter
from inference.withdrawal import WithdrawResultTask
from testkit.peers import dciodvfy_errors, sr_template_findings_of
from tests.delivery.test_pacs import SC, SR, SR_3D, Pacs, deliver_until_quiet, reported_study
from tests.dicom_node.test_studies import T0
from triage import messages
from triage.records import withdrawals
from triage.records.tables import Delivery, DeliveryState, OutboxMessage, StudyState, StudyVersion

pytestmark = pytest.mark.integration

KOS = "1.2.840.10008.5.1.4.1.1.88.59"


class RecordingPacs(Pacs):
    """A PACS that keeps what it stores, and may run ``during_store`` before it answers."""

    def __init__(self, classes, during_store=None):
        self.datasets, self._during_store = [], during_store
        super().__init__(classes)

    def _store(self, event):
        if self._during_store is not None:
            self._during_store(event.dataset)
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        self.datasets.append(dataset)
        return super()._store(event)


def pacs_and_deliverer(database, settings, during_store=None):
    stub, deliverer = reported_study(database, settings, [SC, SR_3D])
    stub.stop()
    with database.session() as session:
        session.scalars(select(StudyVersion)).one().pipeline = "fracture"  # as routing set it
    pacs = RecordingPacs([SC, SR_3D, SR, KOS], during_store)
    deliverer._pacs = pacs.peer  # the same deliverer, pointed at the recording PACS
    return pacs, deliverer


def run_withdrawal_tasks(database, settings):
    """Run every queued withdrawal task as a worker would, on the outbox's record."""
    with database.session() as session:
        payloads = list(
            session.scalars(
                select(OutboxMessage.payload).where(OutboxMessage.task_name == messages.WITHDRAW_RESULT)
            )
        )
    task = WithdrawResultTask(database, ReportWriter(settings.results_dir))
    return [task(payload) for payload in payloads]


def the_version(database):
    with database.session() as session:
        return session.scalars(select(StudyVersion)).one()


def rejected_by(note):
    return {
        ref.ReferencedSOPInstanceUID
        for item in note.ContentSequence
        if "ReferencedSOPSequence" in item
        for ref in item.ReferencedSOPSequence
    }


def test_a_withdrawal_racing_the_summary_image_still_rejects_it_at_the_pacs(database, settings, tmp_path):
    def withdraw_now(dataset):  # an admin retracts while the PACS is storing the summary image
        if dataset.SOPClassUID == SC:
            with database.session() as session:
                withdrawals.withdraw(session, the_version(database).id, "retracted: wrong patient", T0)

    pacs, deliverer = pacs_and_deliverer(database, settings, withdraw_now)
    try:
        deliver_until_quiet(deliverer, rounds=2)
        assert the_version(database).state == StudyState.NOT_ANALYSED
        with database.session() as session:
            states = {d.kind: d.state for d in session.scalars(select(Delivery))}
        assert states == {"sc": DeliveryState.DELIVERED, "sr": DeliveryState.FAILED}
        shutil.rmtree(settings.storage_dir)  # the originals are gone too: the note needs none of them
        assert run_withdrawal_tasks(database, settings) == ["withdrawn"]
        assert run_withdrawal_tasks(database, settings) == ["already-withdrawn"], "once per set"
        deliverer.deliver_due(database.now())  # the task queued them now, not at T0
    finally:
        pacs.stop()
    assert [ds.SOPClassUID for ds in pacs.datasets] == [SC, KOS], "no SR acts; the summary image is rejected"
    summary, note = pacs.datasets
    assert rejected_by(note) == {summary.SOPInstanceUID}
    assert note.ConceptNameCodeSequence[0].CodeValue == "113037"
    path = tmp_path / "kos.dcm"
    note.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    assert sr_template_findings_of([path]) == [([], [])]


def test_a_verdict_retracted_after_retention_is_superseded_from_the_objects_sent(
    database, settings, tmp_path
):
    pacs, deliverer = pacs_and_deliverer(database, settings)
    try:
        deliver_until_quiet(deliverer, rounds=2)
        assert the_version(database).state == StudyState.REPORTED
        images = sorted(p.name for p in settings.storage_dir.rglob("*.dcm"))
        shutil.rmtree(settings.storage_dir)
        with database.session() as session:
            withdrawn = withdrawals.retract(
                session, the_version(database).study_id, "model recalled", T0, "ann", "api"
            )
        assert withdrawn is not None and withdrawn.superseded_at_pacs
        assert run_withdrawal_tasks(database, settings) == ["withdrawn"]
        deliverer.deliver_due(database.now())
    finally:
        pacs.stop()
    summary, report, superseding, note = pacs.datasets
    assert [summary.SOPClassUID, report.SOPClassUID, note.SOPClassUID] == [SC, SR_3D, KOS]
    assert rejected_by(note) == {summary.SOPInstanceUID, report.SOPInstanceUID}
    predecessor = superseding.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == report.SOPInstanceUID
    evidence = superseding.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    named = sorted(f"{ref.ReferencedSOPInstanceUID}.dcm" for s in evidence for ref in s.ReferencedSOPSequence)
    assert named == images, "the superseding report names the same images, without reading them"
    assert (superseding.PatientID, superseding.StudyInstanceUID) == (
        report.PatientID,
        report.StudyInstanceUID,
    )
    paths = [tmp_path / "superseding.dcm", tmp_path / "kos.dcm"]
    for path, ds in zip(paths, (superseding, note), strict=True):
        ds.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == []
    assert sr_template_findings_of(paths) == [([], []), ([], [])]  # one JVM for both
    assert dcmread(paths[1]).SOPInstanceUID == note.SOPInstanceUID
    with database.session() as session:
        states = {d.kind: d.state for d in session.scalars(select(Delivery))}
    assert states["withdrawal-sr"] == states["kos"] == DeliveryState.DELIVERED
