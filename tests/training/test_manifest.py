"""The manifest format, its adapters from public formats and from the worklist, and splits by patient."""

import csv
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from testkit import synthetic
from testkit.peers import REPO, dciodvfy_errors, triage_env
from tests.worklist import seed
from training.adapters import cbis_ddsm, vindr_mammo, worklist_feedback
from training.data import split_by_group
from triage.deidentification import deidentify
from triage.header_facts import HeaderFacts
from triage.manifests import ManifestError, Sample, read_manifest, write_manifest
from triage.records import readings
from triage.records.db import utcnow
from triage.records.tables import FeedbackKind


def png(path, value=0.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32), int(value * 255), dtype=np.uint8)).save(path)
    return path


def test_a_manifest_round_trips_labels_boxes_patients_splits_and_subgroups(tmp_path):
    samples = [
        Sample(
            label=1,
            group="p1",
            meta=HeaderFacts(modality="MG", laterality="L", view="CC"),
            boxes=((1.0, 2.0, 10.5, 20.0), (3.0, 3.0, 4.0, 4.0)),
            path=png(tmp_path / "data" / "a.png"),
            exam="e1",
            split="test",
            subgroups={"site": "Herlev", "age_band": "50-59"},
        ),
        Sample(
            label=0,
            group="p2",
            meta=HeaderFacts(modality="MG", laterality="R", view="MLO"),
            path=png(tmp_path / "b.png"),
        ),
    ]
    path = tmp_path / "data" / "manifest.csv"
    assert write_manifest(samples, path) == 2
    rows = list(csv.DictReader(path.open()))
    assert rows[0]["image"] == "a.png" and rows[0]["boxes"] == "1,2,10.5,20;3,3,4,4"
    back = read_manifest(path, "MG")
    assert [(s.label, s.group, s.exam, s.split, s.boxes, s.meta.view) for s in back] == [
        (1, "p1", "e1", "test", ((1.0, 2.0, 10.5, 20.0), (3.0, 3.0, 4.0, 4.0)), "CC"),
        (0, "p2", "p2", "", (), "MLO"),
    ]
    assert back[0].subgroups == {"site": "Herlev", "age_band": "50-59"}
    assert back[1].load().shape == (32, 32)


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"label": "yes"}, "label must be 0 or 1"),
        ({"boxes": "5,5,1,1"}, "x0 >= x1"),
        ({"boxes": "1,2,3"}, "a box is x0,y0,x1,y1"),
        ({"split": "holdout"}, "split must be"),
        ({"patient_id": ""}, "patient_id is empty"),
    ],
)
def test_a_bad_row_is_refused_with_its_line(tmp_path, row, words):
    good = {
        "image": "a.png",
        "label": "1",
        "boxes": "",
        "view": "",
        "laterality": "",
        "patient_id": "p",
        "exam_id": "",
        "split": "",
    }
    path = tmp_path / "manifest.csv"
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(good))
        writer.writeheader()
        writer.writerow({**good, **row})
    with pytest.raises(ManifestError, match=f"manifest.csv:2: .*{words}"):
        read_manifest(path, "DX")


def test_a_patient_in_two_splits_is_refused(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text(
        "image,label,boxes,view,laterality,patient_id,exam_id,split\na.png,1,,,,p1,,train\nb.png,0,,,,p1,,test\n"
    )
    with pytest.raises(ManifestError, match="patient p1 is in two splits"):
        read_manifest(path, "DX")


def test_splits_are_by_patient_and_keep_fixed_splits():
    samples = [
        Sample(label=i % 2, group=f"p{i // 3}", meta=HeaderFacts(), split="test" if i < 3 else "")
        for i in range(60)
    ]
    train, validation, test = split_by_group(samples, 0.2, 0.2, seed=3)
    assert {s.group for s in samples[:3]} <= {s.group for s in test}
    groups = [{s.group for s in part} for part in (train, validation, test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert len(train) + len(validation) + len(test) == 60


def test_cbis_ddsm_case_descriptions(tmp_path):
    header = (
        "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
        "pathology,image file path\n"
    )
    (tmp_path / "mass_case_description_train_set.csv").write_text(
        header + "P_00001,3,LEFT,CC,1,mass,BENIGN,P_00001_LEFT_CC/1.dcm\n"
        "P_00001,3,LEFT,CC,2,mass,MALIGNANT,P_00001_LEFT_CC/1.dcm\n"
        "P_00001,3,LEFT,MLO,1,mass,BENIGN,P_00001_LEFT_MLO/1.dcm\n"
    )
    (tmp_path / "calc_case_description_test_set.csv").write_text(
        header + "P_00038,2,RIGHT,MLO,1,calcification,BENIGN_WITHOUT_CALLBACK,P_00038_RIGHT_MLO/1.dcm\n"
    )
    samples = sorted(cbis_ddsm(tmp_path), key=lambda s: str(s.path))
    assert [(s.group, s.meta.laterality, s.meta.view, s.label, s.split) for s in samples] == [
        ("P_00001", "L", "CC", 1, "train"),  # two abnormalities on one image: malignant wins
        ("P_00001", "L", "MLO", 0, "train"),
        ("P_00038", "R", "MLO", 0, "test"),
    ]


def test_vindr_mammo_birads_and_boxes(tmp_path):
    (tmp_path / "breast-level_annotations.csv").write_text(
        "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,split\n"
        "s1,x,i1,L,CC,3518,2800,BI-RADS 4,DENSITY C,training\n"
        "s1,x,i2,R,CC,3518,2800,BI-RADS 1,DENSITY C,training\n"
        "s2,y,i3,L,MLO,3518,2800,BI-RADS 2,DENSITY B,test\n"
    )
    (tmp_path / "finding_annotations.csv").write_text(
        "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,finding_categories,finding_birads,xmin,ymin,xmax,ymax,split\n"
        "s1,x,i1,L,CC,3518,2800,BI-RADS 4,DENSITY C,['Mass'],BI-RADS 4,100.5,200,300,400,training\n"
        "s2,y,i3,L,MLO,3518,2800,BI-RADS 2,DENSITY B,['Mass'],BI-RADS 2,10,20,30,40,test\n"
    )
    samples = vindr_mammo(tmp_path)
    assert [(s.group, s.label, s.boxes, s.split) for s in samples] == [
        ("s1", 1, ((100.5, 200.0, 300.0, 400.0),), "train"),
        ("s1", 0, (), "train"),
        ("s2", 0, (), "test"),  # a BI-RADS 2 finding is not a positive box
    ]
    assert samples[0].path == tmp_path / "images" / "s1" / "i1.dicom"


def test_deidentification_follows_the_basic_profile(tmp_path):
    ds = synthetic.dx(patient=seed.patient(7))
    ds.InstitutionName, ds.OperatorsName = "Rigshospitalet", "Operator^Anna"
    ds.add_new(0x00091001, "LO", "private secret")
    clean = deidentify(ds, b"k" * 32, patient_key="abc123")
    for keyword in ("PatientBirthDate", "StudyDate", "AccessionNumber", "InstitutionName", "OperatorsName"):
        # emptied (Z) or a dummy (D, where Table E.1-1 allows it): Type 1 and 2 attributes stay present
        assert clean.get(keyword) in (None, "", "ANONYMIZED"), keyword
    assert (clean.PatientID, str(clean.PatientName), clean.PatientIdentityRemoved) == (
        "abc123",
        "ANONYMOUS",
        "YES",
    )
    assert clean.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert clean.SOPClassUID == ds.SOPClassUID  # a standard UID stays
    assert clean.StudyInstanceUID != ds.StudyInstanceUID and clean.StudyInstanceUID.startswith("2.25.")
    assert deidentify(ds, b"k" * 32, "abc123").SOPInstanceUID == clean.SOPInstanceUID  # consistently
    assert clean.file_meta.MediaStorageSOPInstanceUID == clean.SOPInstanceUID
    assert 0x00091001 not in clean
    path, original = tmp_path / "clean.dcm", tmp_path / "original.dcm"
    clean.save_as(path, enforce_file_format=True)
    ds.save_as(original, enforce_file_format=True)
    assert set(dciodvfy_errors(path)) <= set(dciodvfy_errors(original))  # de-identifying broke nothing
    assert b"Phantom" not in path.read_bytes() and b"SYN0007" not in path.read_bytes()
    burned = synthetic.dx()
    burned.BurnedInAnnotation = "YES"
    with pytest.raises(ValueError, match="burned-in"):
        deidentify(burned, b"k" * 32, "x")


def test_worklist_readings_export_as_a_deidentified_manifest(settings, database, tmp_path):
    ids = seed.worklist_of_every_kind(database, settings)
    with database.session() as session:
        readings.add_feedback(
            session,
            study_id=ids["fracture"],
            kind=FeedbackKind.FRACTURE,
            value=True,
            boxes=[],
            comment="",
            author="local:rad",
            now=utcnow(),
        )
        readings.add_feedback(
            session,
            study_id=ids["single"],
            kind=FeedbackKind.CANCER,
            value=False,
            boxes=[],
            comment="",
            author="local:rad",
            now=utcnow(),
        )
    out = tmp_path / "export"
    result = subprocess.run(
        [sys.executable, "-m", "triage", "labels", "export", "--out", str(out)],
        env=triage_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "2 readings, 5 images" in result.stdout  # one radiograph, four screening views
    samples = read_manifest(out / "manifest.csv", "DX")
    assert sorted(s.label for s in samples) == [0, 0, 0, 0, 1]
    assert len({s.group for s in samples}) == 2
    assert all(s.path.is_file() for s in worklist_feedback(out))
    for file in (out / "images").iterdir():
        data = file.read_bytes()
        assert b"Phantom" not in data and b"SYN000" not in data and b"ACC000" not in data
        assert dcmread(file).PatientIdentityRemoved == "YES"
