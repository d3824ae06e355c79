"""Orthanc (a real PACS) -> triage -> Orthanc: the whole loop on phantom studies, CPU models."""

import io
import urllib.request

import pytest
from pydicom import dcmread
from sqlalchemy import select

from delivery import pacs as delivery
from dicom_node.listener import Listener
from inference.cad_codes import MAMMOGRAPHY_CAD_SR
from inference.networks import CentrePointDetector
from testkit import phantoms, synthetic
from testkit.peers import Orthanc, dciodvfy_errors, free_port, start_triage, stop, wait_until
from tests.inference.test_pipelines import DECILES, phantom_model
from training.export import write_model
from triage.records.tables import Delivery, StudyState, StudyVersion

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def phantom_models(tmp_path_factory):
    """Models trained for a few steps on phantoms, so the verdicts on phantom studies are known."""
    folder = tmp_path_factory.mktemp("models")
    detector = phantom_model(
        CentrePointDetector(pretrained=True),
        phantoms.radiograph,
        "DX",
        name="phantom-fracture",
        architecture="centrepoint-lite0",
        fracture_threshold=0.5,
        doubt_threshold=0.2,
    )
    lesions = phantom_model(
        CentrePointDetector(pretrained=True),
        phantoms.mammogram,
        "MG",
        name="phantom-lesions",
        architecture="centrepoint-lite0",
        decile_cut_points=DECILES,
    )
    for pipeline, model in (("fracture", detector), ("breast", lesions)):
        card = model.card.model_dump(exclude={"weights_file", "weights_sha256"})
        write_model(folder / pipeline, model.network, **card)
    return folder


@pytest.fixture
def loop(make_settings, tmp_path, phantom_models):
    """Orthanc knows triage as "triage"; triage sends results back to Orthanc."""
    port = free_port()
    pacs = Orthanc(tmp_path / "orthanc", {"triage": ("TRIAGE", "127.0.0.1", port)})
    settings = make_settings(
        dicom_port=port, pacs=f"ORTHANC@127.0.0.1:{pacs.dicom_port}", models_dir=phantom_models
    )
    listener = Listener(settings)
    listener.start()
    senders = delivery.start(settings, listener.database)
    worker = start_triage("worker", settings, tmp_path / "worker.log")
    yield pacs, listener
    stop(worker)
    for sender in senders:
        sender.stop()
    listener.stop()
    pacs.stop()


def push(pacs, datasets, folder):
    [study] = {pacs.upload(path)["ParentStudy"] for path in synthetic.write(datasets, folder)}
    job = pacs.request("POST", "/modalities/triage/store", {"Resources": [study], "Synchronous": True})
    assert job["FailedInstancesCount"] == 0
    return study


def modalities(pacs, study):
    return sorted(series["MainDicomTags"]["Modality"] for series in pacs.get(f"/studies/{study}/series"))


def srs_of(pacs, study):
    """The study's SRs, fetched from Orthanc as files."""
    found = []
    for series in pacs.get(f"/studies/{study}/series"):
        if series["MainDicomTags"]["Modality"] == "SR":
            [instance] = series["Instances"]
            found.append(dcmread(io.BytesIO(pacs.download(f"/instances/{instance}/file"))))
    return found


def sr_of(pacs, study):
    """The study's TID 1500 SR (a screen also has a Mammography CAD SR)."""
    [sr] = [ds for ds in srs_of(pacs, study) if ds.SOPClassUID != MAMMOGRAPHY_CAD_SR]
    return sr


def state_code(pacs, study):
    """The coded triage state in the study's SR, as the PACS holds it."""
    found = []

    def walk(items):
        for item in items:
            name = item.get("ConceptNameCodeSequence")
            if name and name[0].get("CodeValue") == "STATE" and "ConceptCodeSequence" in item:
                found.append(item.ConceptCodeSequence[0].CodeValue)
            walk(item.get("ContentSequence", []))

    walk(sr_of(pacs, study).ContentSequence)
    [code] = found
    return code


def states(listener):
    with listener.database.session() as session:
        return sorted(session.scalars(select(StudyVersion.state)))


def test_results_arrive_in_the_same_studies_as_sr_and_summary_image(loop, tmp_path):
    pacs, listener = loop
    trauma = push(pacs, phantoms.trauma_study(True, seed=1, images=3), tmp_path / "trauma")
    screen = push(pacs, phantoms.screen("L", seed=2), tmp_path / "screen")
    intact = push(pacs, phantoms.trauma_study(False, seed=5, images=2), tmp_path / "intact")
    wait_until(lambda: states(listener) == [StudyState.REPORTED] * 3, timeout=180)
    assert modalities(pacs, trauma) == ["DX", "OT", "SR"]
    assert modalities(pacs, screen) == ["MG", "OT", "SR", "SR"], "the TID 1500 SR and the CAD SR"
    assert MAMMOGRAPHY_CAD_SR in {ds.SOPClassUID for ds in srs_of(pacs, screen)}
    verdicts = {study: state_code(pacs, study) for study in (trauma, intact, screen)}
    assert verdicts[trauma] in {"FRACTURE", "DOUBT"} and verdicts[intact] == "NO-FRACTURE"
    assert verdicts[screen] == "ANALYSED"
    for study in (trauma, screen):
        srs = [s for s in pacs.get(f"/studies/{study}/series") if s["MainDicomTags"]["Modality"] == "SR"]
        assert all("not verified" in sr["MainDicomTags"]["SeriesDescription"] for sr in srs)


def test_results_wait_for_a_pacs_that_is_down_and_arrive_once(loop, tmp_path):
    pacs, listener = loop
    study = push(pacs, phantoms.trauma_study(False, seed=3, images=1), tmp_path / "trauma")
    pacs.stop()

    def retrying():
        with listener.database.session() as session:
            return any(d.attempts >= 1 and d.last_error for d in session.scalars(select(Delivery)))

    wait_until(retrying, timeout=120)
    assert states(listener) == [StudyState.ANALYSED], "not REPORTED before the PACS has the results"
    pacs.start()
    wait_until(lambda: states(listener) == [StudyState.REPORTED], timeout=120)
    assert modalities(pacs, study) == ["DX", "OT", "SR"]
    assert len(pacs.get(f"/studies/{study}/instances")) == 1 + 2, "each result object stored once"


def test_an_incomplete_screen_is_reported_as_not_analysed_for_double_reading(loop, tmp_path):
    pacs, listener = loop
    study = push(pacs, phantoms.screen(None, seed=4)[:2], tmp_path / "screen")

    def delivered():
        with listener.database.session() as session:
            rows = list(session.scalars(select(Delivery)))
        return len(rows) == 3 and all(d.delivered_at is not None for d in rows)

    wait_until(delivered, timeout=120)
    assert states(listener) == [StudyState.NOT_ANALYSED]
    assert modalities(pacs, study) == ["MG", "OT", "SR", "SR"]
    why = "incomplete screen: missing R-CC, R-MLO; double reading"
    for sr in srs_of(pacs, study):  # the TID 1500 SR and the CAD SR say why, each in its own way
        assert why in [element.value for element in sr.iterall() if element.keyword == "TextValue"]
    assert state_code(pacs, study) == "NOT-ANALYSED"


def instances_of_modality(pacs, study, modality, folder):
    """Every instance of a modality in a study, fetched from Orthanc as files."""
    found = []
    folder.mkdir(parents=True, exist_ok=True)
    for series in pacs.get(f"/studies/{study}/series"):
        if series["MainDicomTags"]["Modality"] != modality:
            continue
        for instance in series["Instances"]:
            url = f"http://127.0.0.1:{pacs.http_port}/instances/{instance}/file"
            with urllib.request.urlopen(url, timeout=30) as r:
                path = folder / f"{instance}.dcm"
                path.write_bytes(r.read())
                found.append(path)
    return found


def test_a_verdict_that_late_images_replace_is_superseded_and_rejected_at_the_pacs(loop, tmp_path):
    pacs, listener = loop
    first = phantoms.trauma_study(False, seed=7, images=2)
    study = push(pacs, first, tmp_path / "first")
    wait_until(lambda: states(listener) == [StudyState.REPORTED], timeout=180)
    [original_sr] = [dcmread(p) for p in instances_of_modality(pacs, study, "SR", tmp_path / "sr-before")]
    assert state_code(pacs, study) == "NO-FRACTURE"

    late = phantoms.trauma_study(False, seed=8, images=1)[0]
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "PatientBirthDate", "AccessionNumber"):
        setattr(late, keyword, getattr(first[0], keyword))
    [path] = synthetic.write([late], tmp_path / "late")
    instance = pacs.upload(path)["ID"]
    job = pacs.request("POST", "/modalities/triage/store", {"Resources": [instance], "Synchronous": True})
    assert job["FailedInstancesCount"] == 0

    def withdrawn_and_reanalysed():
        with listener.database.session() as session:
            rows = session.execute(select(StudyVersion.number, StudyVersion.state, StudyVersion.reason))
            found = {number: (state, reason) for number, state, reason in rows}
            kinds = {d.kind: d.state for d in session.scalars(select(Delivery))}
        return (
            found
            if found.get(2, (None,))[0] == StudyState.REPORTED and kinds.get("kos") == "DELIVERED"
            else None
        )

    found = wait_until(withdrawn_and_reanalysed, timeout=240)
    assert found[1][0] == StudyState.NOT_ANALYSED and found[1][1].startswith(
        "result withdrawn: images arrived"
    )

    [note] = instances_of_modality(pacs, study, "KO", tmp_path / "ko")
    assert dciodvfy_errors(note) == []
    kos = dcmread(note)
    assert kos.ConceptNameCodeSequence[0].CodeValue == "113037"
    assert kos.ConceptNameCodeSequence[0].CodingSchemeDesignator == "DCM"
    rejected = {
        ref.ReferencedSOPInstanceUID
        for item in kos.ContentSequence
        if "ReferencedSOPSequence" in item
        for ref in item.ReferencedSOPSequence
    }
    assert original_sr.SOPInstanceUID in rejected and len(rejected) == 2, "the SR and the summary image"

    srs = [dcmread(p) for p in instances_of_modality(pacs, study, "SR", tmp_path / "sr-after")]
    [superseding] = [sr for sr in srs if "PredecessorDocumentsSequence" in sr]
    predecessor = superseding.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == original_sr.SOPInstanceUID
    path = tmp_path / "superseding.dcm"
    superseding.save_as(path)
    assert dciodvfy_errors(path) == []
    codes = []

    def walk(items):
        for item in items:
            name = item.get("ConceptNameCodeSequence")
            if name and name[0].get("CodeValue") == "STATE" and "ConceptCodeSequence" in item:
                codes.append(item.ConceptCodeSequence[0].CodeValue)
            walk(item.get("ContentSequence", []))

    walk(superseding.ContentSequence)
    assert codes == ["NOT-ANALYSED"]
    assert len(srs) == 3, "the withdrawn SR, the one that supersedes it, and version 2's"
