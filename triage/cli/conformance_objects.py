"""The objects the conformance statement describes, built by the code that writes them on a made-up
source image, and the private codes they use: the statement's tables are read from these."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.sr.coding import Code
from pydicom.uid import UID

STUDY = "1.2.826.0.1.3680043.8.498.1"


def source_header(study: str, instance: str) -> Dataset:
    """A made-up DX image header, the kind of source every created object copies from."""
    ds = Dataset()
    ds.SOPClassUID = pydicom.uid.DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = instance
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = f"{study}.1"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "ID1", "19700101", "F"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "120000", "ACC1", "S1"
    ds.ReferringPhysicianName, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "Ref^Doc", "DX", 3, 7
    ds.ImageLaterality = "L" if study.endswith("1") else "R"  # differs between the two builds compared
    ds.ViewPosition, ds.BodyPartExamined = "AP", "HAND"
    ds.Rows, ds.Columns = 64, 64
    ds.PatientOrientation = ["A", "F"]
    ds.SpecificCharacterSet = "ISO_IR 100"
    return ds


def created(study: str, model_version: str) -> dict[str, Dataset]:
    """One of each object triage writes, for a made-up study."""
    from inference.inputs import SourceImage, StudyImages
    from inference.reports import fracture_report
    from inference.sr_content import report_uid
    from inference.summary import render, summary_image
    from inference.withdrawal import rejection_note
    from triage.header_facts import header_facts
    from triage.messages import InstanceRef
    from triage.outcomes import FractureOutcome, ModelIdentity

    source = source_header(study, f"{study}.1.1")
    model = ModelIdentity("triage-fracture-lite0", model_version, "ab" * 32)
    outcome = FractureOutcome.model_validate(
        {
            "state": "FRACTURE",
            "probability": 0.9,
            "images": [
                {
                    "sop_instance_uid": source.SOPInstanceUID,
                    "boxes": [{"corners": [1, 2, 30, 40], "score": 0.9}],
                }
            ],
        }
    )
    ref = InstanceRef(
        sop_instance_uid=source.SOPInstanceUID,
        sop_class_uid=source.SOPClassUID,
        storage_key="k",
        sha256="0" * 64,
    )
    images = StudyImages((SourceImage(ref, source, header_facts(source), np.zeros((64, 64), np.float32)),))
    sr = fracture_report([source], outcome, model, 1)
    uids = [report_uid(study, 1, model.name, model.version, kind) for kind in ("sc-series", "sc")]
    sc = summary_image(images, render(images, outcome, "", f"{model.name} {model.version}"), *uids)
    return {"sr": sr, "sc": sc, "cad": _cad(study, model_version), "kos": rejection_note([sr, sc], study, 1)}


def _cad(study: str, model_version: str) -> Dataset:
    """A screen's Mammography CAD SR, on a made-up mammogram with one lesion."""
    from inference.cad_report import cad_report
    from triage.outcomes import BreastOutcome, ModelIdentity

    mammogram = source_header(study, f"{study}.1.2")
    mammogram.SOPClassUID = pydicom.uid.DigitalMammographyXRayImageStorageForPresentation
    mammogram.Modality, mammogram.ViewPosition, mammogram.BodyPartExamined = "MG", "CC", "BREAST"
    lesion = {"corners": [1, 2, 30, 40], "score": 0.6}
    view = {"sop_instance_uid": mammogram.SOPInstanceUID, "laterality": mammogram.ImageLaterality,
            "view": "CC", "probability": 0.6, "lesions": [lesion]}  # fmt: skip
    outcome = BreastOutcome.model_validate(
        {"score": 7, "probability": 0.6, "single_read_max_score": 5, "per_view": [view]}
    )
    return cad_report([mammogram], outcome, ModelIdentity("triage-breast-lite0", model_version, "cd" * 32), 1)


def attribute_rows(name: str) -> list[tuple[str, str, str]]:
    """Each top-level attribute of one created object, with its value or where the value comes from,
    found by building the object twice (two studies, two model versions) and comparing."""
    first = created(STUDY, "1.0.0")
    second = created(f"{STUDY}0", "2.0.0")
    sources = (source_header(STUDY, f"{STUDY}.1.1"),)
    a, b = first[name], second[name]
    rows = []
    for element in a:
        keyword = element.keyword or str(element.tag)
        other = b.get(element.tag)
        copied = any(keyword in s and str(s[keyword].value) == str(element.value) for s in sources)
        if copied and keyword not in ("SpecificCharacterSet",):
            origin = "copied from the source images"
        elif keyword in ("SpecificCharacterSet",):
            origin = "the source images' (their names are copied as they are)"
        elif element.VR in ("DA", "TM", "DT"):
            origin = "when the object is written"
        elif element.VR == "SQ":
            origin = "sequence: see below" if keyword == "ContentSequence" else "sequence, built per result"
        elif element.VR == "UI" and other is not None and other.value != element.value:
            origin = "derived from the study, its version and the model (the same on every re-send)"
        elif other is not None and other.value != element.value:
            origin = "per result (from the study's images and the model)"
        elif keyword == "PixelData":
            origin = "the rendered summary"
        else:
            value = element.value
            shown = value.name if isinstance(value, UID) and value.is_valid else str(value)
            origin = f"`{shown[:80]}`"
        rows.append((f"({element.tag.group:04X},{element.tag.element:04X})", keyword, origin))
    return rows


def private_codes() -> list[Code]:
    from triage import codes

    found: dict[tuple[str, str], Code] = {}
    for value in vars(codes).values():
        items = value.values() if isinstance(value, dict) else [value]
        for item in items:
            if isinstance(item, Code) and item.scheme_designator == codes.SCHEME:
                found.setdefault((item.value, item.meaning), item)
    return sorted(found.values(), key=lambda c: c.value)
