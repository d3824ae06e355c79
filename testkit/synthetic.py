"""Synthetic DX and MG instances with realistic headers (no real patient data), for tests and benches.

Headers follow the real CR/DX samples in ``shared/datasets/dicom_samples`` (DX for presentation,
MONOCHROME2, 16-bit storage); pixel content is noise around a ramp, not anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

from inference.inputs import StudyImages, read_study
from triage.messages import AnalyseStudy, InstanceRef
from triage.pipelines import Pipeline
from triage.records.storage import instance_key, sha256_of

_VIEW_CODES = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}


@dataclass
class Patient:
    patient_id: str = "SYN0001"
    name: str = "Synthetic^Patient"
    birth_date: str = "19700101"
    accession_number: str = "ACC0001"


@dataclass
class StudyIds:
    study_instance_uid: str = field(default_factory=generate_uid)
    series_instance_uid: str = field(default_factory=generate_uid)


def _base(
    sop_class_uid: str, ids: StudyIds, patient: Patient, modality: str, sop_instance_uid: str | None
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = ids.study_instance_uid
    ds.SeriesInstanceUID = ids.series_instance_uid
    ds.Modality = modality
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = "SYNTHETIC"
    ds.PatientName = patient.name
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = "F" if modality == "MG" else "O"
    ds.AccessionNumber = patient.accession_number
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "triage test suite (synthetic)"
    ds.ReferringPhysicianName = ""
    ds.PatientOrientation = ["A", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PixelSpacing = [0.1, 0.1]
    ds.ImagerPixelSpacing = [0.1, 0.1]
    return ds


def _pixels(ds: Dataset, rows: int, columns: int, bits: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, (1 << bits) - 1, columns, dtype=np.float64)[None, :].repeat(rows, axis=0)
    noise = rng.normal(0, (1 << bits) / 64, size=(rows, columns))
    allocated = 8 if bits <= 8 else 16
    pixels = np.clip(ramp + noise, 0, (1 << bits) - 1).astype(np.uint8 if allocated == 8 else np.uint16)
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = (1 << bits) // 2, 1 << bits
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PixelData = pixels.tobytes()


def dx(
    ids: StudyIds | None = None,
    *,
    body_part: str = "WRIST",
    patient: Patient | None = None,
    rows: int = 64,
    columns: int = 64,
    bits: int = 12,
    seed: int = 0,
    instance_number: int = 1,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """A DX For Presentation instance of a trauma series."""
    ds = _base(
        DigitalXRayImageStorageForPresentation,
        ids or StudyIds(),
        patient or Patient(),
        "DX",
        sop_instance_uid,
    )
    ds.BodyPartExamined = body_part
    ds.ViewPosition = "PA"
    ds.ImageLaterality = "R"
    ds.InstanceNumber = instance_number
    ds.StudyDescription = f"XR {body_part} trauma"
    _pixels(ds, rows, columns, bits, seed)
    return ds


def mg(
    ids: StudyIds | None = None,
    *,
    laterality: str = "L",
    view: str = "CC",
    patient: Patient | None = None,
    rows: int = 64,
    columns: int = 48,
    implant: str = "NO",
    seed: int = 0,
    sop_instance_uid: str | None = None,
) -> Dataset:
    """An MG For Presentation screening view, with laterality and view coded as a modality sends them."""
    ds = _base(
        DigitalMammographyXRayImageStorageForPresentation,
        ids or StudyIds(),
        patient or Patient(),
        "MG",
        sop_instance_uid,
    )
    ds.BodyPartExamined = "BREAST"
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    code = Dataset()
    code.CodeValue, code.CodeMeaning = _VIEW_CODES[view]
    code.CodingSchemeDesignator = "SCT"
    ds.ViewCodeSequence = Sequence([code])
    ds.BreastImplantPresent = implant
    ds.PatientOrientation = ["P", "F"] if laterality == "R" else ["A", "F"]  # chest wall right for R
    ds.StudyDescription = "Screening mammography"
    ds.InstanceNumber = {"R-CC": 1, "L-CC": 2, "R-MLO": 3, "L-MLO": 4}.get(f"{laterality}-{view}", 5)
    _pixels(ds, rows, columns, 12, seed)
    return ds


def screen(
    ids: StudyIds | None = None,
    views: tuple[str, ...] = ("L-CC", "L-MLO", "R-CC", "R-MLO"),
    **kwargs: object,
) -> list[Dataset]:
    """A four-view screening exam (or the given subset of its views), one study."""
    ids = ids or StudyIds()
    return [
        mg(ids, laterality=v.split("-")[0], view=v.split("-")[1], seed=i, **kwargs)
        for i, v in enumerate(views)
    ]  # type: ignore[arg-type]


def write(datasets: list[Dataset], folder: Path) -> list[Path]:
    """Write each data set as a DICOM file named after its SOP Instance UID."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def store(datasets: list[Dataset], storage_dir: Path, pipeline: str, version_id: int = 1) -> AnalyseStudy:
    """Put instances into storage as the listener would, and the task payload that names them."""
    refs = []
    for ds in datasets:
        key = instance_key(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        (storage_dir / key).parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(storage_dir / key, enforce_file_format=True)
        refs.append(
            InstanceRef(
                sop_instance_uid=ds.SOPInstanceUID,
                sop_class_uid=ds.SOPClassUID,
                storage_key=key,
                sha256=sha256_of(storage_dir / key),
            )
        )
    return AnalyseStudy(
        study_version_id=version_id,
        study_instance_uid=datasets[0].StudyInstanceUID,
        version=1,
        pipeline=Pipeline(pipeline),
        instances=tuple(refs),
        skipped={},
    )


def stored_study(
    datasets: list[Dataset], storage_dir: Path, pipeline: str
) -> tuple[AnalyseStudy, StudyImages]:
    """``store`` the instances and read them back as a worker would."""
    payload = store(datasets, storage_dir, pipeline)
    return payload, read_study(payload, storage_dir)


def radiograph(
    pixels: np.ndarray, *, body_part: str, patient: Patient | None = None, ids: StudyIds | None = None
) -> Dataset:
    """A real 8-bit radiograph (a data set's PNG or JPEG) wrapped losslessly as DX For Presentation,
    with a window (centre 128, width 256) that maps the stored values to exactly value / 255."""
    ds = dx(ids, body_part=body_part, patient=patient, rows=pixels.shape[0], columns=pixels.shape[1], bits=8)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    del ds.PixelSpacing, ds.ImagerPixelSpacing  # FracAtlas gives none: square pixels of unknown size
    return ds


def synthetic_evidence(doubt_threshold: float = 0.2, single_read_max_score: int = 10) -> dict[str, object]:
    """A card's ``evidence`` that meets the default bars of the evidence gate (triage.evidence), for
    phantom models in tests: made up, and its source says so. Leave it out to test the gate off."""
    source = "synthetic: made up by the tests, not measured"

    def metric(value: float, low: float, high: float, n: int) -> dict[str, object]:
        return {"value": value, "ci95_low": low, "ci95_high": high, "n": n}

    return {
        "rule_out": {
            "sensitivity_at_doubt": metric(1.0, 0.97, 1.0, 120),
            "doubt_threshold": doubt_threshold,
            "source": source,
        },
        "single_read": [
            {
                "single_read_max_score": single_read_max_score,
                "cancers_single_read": metric(0.05, 0.01, 0.12, 60),
                "screens_single_read": metric(0.5, 0.45, 0.55, 400),
                "source": source,
            }
        ],
        "boxes": {"map50": metric(0.5, 0.4, 0.6, 200), "source": source},
    }
