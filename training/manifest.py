"""One manifest format for every labelled set, and adapters from the public formats into it.

A manifest is a CSV file, one row per image::

    image,label,boxes,view,laterality,patient_id,exam_id,split,site,device,age_band

``image`` is a DICOM or PNG/JPEG path relative to the manifest's folder; ``label`` is 1 (fracture,
or a positive screen finding) or 0; ``boxes`` is ``x0,y0,x1,y1`` in source pixels, several joined
by ``;``; ``split`` is train, validation or test, or empty to split by patient; the last three
columns are optional subgroups that evaluation reports on. Splits are by patient, never by
image: a patient whose rows name two different splits is refused.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from inference.model import DatasetCredit
from training.data import Sample, fracatlas, mini_mias, parse_boxes
from triage.imaging import ImageMeta

COLUMNS = (
    "image",
    "label",
    "boxes",
    "view",
    "laterality",
    "patient_id",
    "exam_id",
    "split",
    "site",
    "device",
    "age_band",
)
SUBGROUPS = ("site", "device", "age_band")
SPLITS = ("", "train", "validation", "test")


class ManifestError(Exception):
    """A manifest or a source data set cannot be read as given; the message names the row."""


def _format_boxes(boxes: Iterable[tuple[float, float, float, float]]) -> str:
    return ";".join(",".join(f"{v:g}" for v in box) for box in boxes)


def write_manifest(samples: Iterable[Sample], path: Path) -> int:
    """Write samples as a manifest (image paths relative to its folder); return the row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    count = 0
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for sample in samples:
            assert sample.path is not None, "a manifest row needs an image file"
            image = sample.path.resolve()
            writer.writerow(
                {
                    "image": str(image.relative_to(base)) if image.is_relative_to(base) else str(image),
                    "label": sample.label,
                    "boxes": _format_boxes(sample.boxes),
                    "view": sample.meta.view,
                    "laterality": sample.meta.laterality,
                    "patient_id": sample.group,
                    "exam_id": sample.exam or sample.group,
                    "split": sample.split,
                    **{key: sample.subgroups.get(key, "") for key in SUBGROUPS},
                }
            )
            count += 1
    return count


def read_manifest(path: Path, modality: str) -> list[Sample]:
    """Read a manifest into samples for a pipeline's ``modality`` (DX for fracture, MG for breast).

    Raises:
        ManifestError: a missing column, a bad label, box or split, or a patient in two splits.
    """
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        missing = [c for c in COLUMNS[:8] if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}")
        samples: list[Sample] = []
        splits: dict[str, str] = {}
        for number, row in enumerate(reader, start=2):
            where = f"{path}:{number}"
            if row["label"] not in ("0", "1"):
                raise ManifestError(f"{where}: label must be 0 or 1, found {row['label']!r}")
            if row["split"] not in SPLITS:
                raise ManifestError(f"{where}: split must be train, validation, test or empty")
            patient = row["patient_id"].strip()
            if not patient:
                raise ManifestError(f"{where}: patient_id is empty; splits are made by patient")
            if splits.setdefault(patient, row["split"]) != row["split"]:
                raise ManifestError(f"{where}: patient {patient} is in two splits; a patient stays in one")
            try:
                boxes = parse_boxes(row["boxes"])
            except ValueError as error:
                raise ManifestError(f"{where}: {error}") from error
            image = Path(row["image"])
            samples.append(
                Sample(
                    label=int(row["label"]),
                    group=patient,
                    meta=ImageMeta(modality=modality, laterality=row["laterality"], view=row["view"]),
                    boxes=boxes,
                    path=image if image.is_absolute() else path.parent / image,
                    exam=row["exam_id"] or patient,
                    split=row["split"],
                    subgroups={k: row[k] for k in SUBGROUPS if row.get(k)},
                )
            )
    return samples


def cbis_ddsm(folder: Path) -> list[Sample]:
    """CBIS-DDSM (TCIA, CC BY 3.0): its case description CSVs; one row per abnormality, merged per
    image. Positive = pathology MALIGNANT; the official train/test split is kept (from the CSV's
    name). Boxes are not read (CBIS gives ROI masks, not boxes)."""
    images: dict[Path, Sample] = {}
    files = sorted(folder.glob("*case_description*.csv"))
    if not files:
        raise ManifestError(f"{folder}: no *case_description*.csv files (CBIS-DDSM's label files)")
    for file in files:
        split = "test" if "test" in file.name.lower() else "train"
        with file.open(newline="", encoding="utf-8") as stream:
            for row in csv.DictReader(stream):
                image = folder / row["image file path"].strip()
                laterality = {"LEFT": "L", "RIGHT": "R"}.get(row["left or right breast"].strip().upper(), "")
                malignant = int(row["pathology"].strip().upper() == "MALIGNANT")
                known = images.get(image)
                images[image] = Sample(
                    label=max(malignant, known.label if known else 0),
                    group=row["patient_id"].strip(),
                    meta=ImageMeta(
                        modality="MG", laterality=laterality, view=row["image view"].strip().upper()
                    ),
                    path=image,
                    exam=row["patient_id"].strip(),
                    split=split,
                )
    return list(images.values())


def vindr_mammo(folder: Path) -> list[Sample]:
    """VinDr-Mammo (PhysioNet, restricted health data licence): breast-level BI-RADS and finding
    boxes. It has no pathology: positive = breast BI-RADS 4 or 5 (suspicious), a proxy, so say so
    in the model card. Each study stands in for its patient (the set has no patient ids)."""
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    findings = folder / "finding_annotations.csv"
    if findings.is_file():
        with findings.open(newline="", encoding="utf-8") as stream:
            for row in csv.DictReader(stream):
                suspicious = row.get("finding_birads", "").strip() in ("BI-RADS 4", "BI-RADS 5")
                if suspicious and row.get("xmin"):
                    boxes.setdefault(row["image_id"], []).append(
                        (float(row["xmin"]), float(row["ymin"]), float(row["xmax"]), float(row["ymax"]))
                    )
    samples = []
    with (folder / "breast-level_annotations.csv").open(newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            samples.append(
                Sample(
                    label=int(row["breast_birads"].strip() in ("BI-RADS 4", "BI-RADS 5")),
                    group=row["study_id"],
                    meta=ImageMeta(modality="MG", laterality=row["laterality"], view=row["view_position"]),
                    boxes=tuple(boxes.get(row["image_id"], [])),
                    path=folder / "images" / row["study_id"] / f"{row['image_id']}.dicom",
                    exam=row["study_id"],
                    split={"training": "train", "test": "test"}.get(row.get("split", ""), ""),
                )
            )
    return samples


def worklist_feedback(folder: Path) -> list[Sample]:
    """A folder written by ``triage labels export``: de-identified DICOM images and the readings."""
    rows = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    samples = []
    for row in rows:
        for image in row["images"]:
            marked = tuple(tuple(b["corners"]) for b in row["boxes"] if b["image_key"] == image["image_key"])
            samples.append(
                Sample(
                    label=int(row["value"]),
                    group=row["patient_key"],
                    meta=ImageMeta(
                        modality="DX" if row["pipeline"] == "fracture" else "MG",
                        laterality=image["laterality"],
                        view=image["view"],
                    ),
                    boxes=marked,
                    path=folder / image["file"],
                    exam=row["exam_key"],
                )
            )
    return samples


ADAPTERS: dict[str, Callable[[Path], list[Sample]]] = {
    "fracatlas": lambda folder: fracatlas(folder),
    "mini_mias": lambda folder: mini_mias(folder, "malignant"),
    "mini_mias_abnormal": lambda folder: mini_mias(folder, "abnormal"),
    "cbis_ddsm": cbis_ddsm,
    "vindr_mammo": vindr_mammo,
    "worklist_feedback": worklist_feedback,
}


def manifest_credit(path: Path) -> DatasetCredit:
    """The model card's data entry for a manifest: its name and content hash; the sources' licences
    are the manifest owner's to state (add them to the card before promotion)."""
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return DatasetCredit(
        name=f"manifest {path.name} (sha256 {digest})",
        licence="as stated by the sources the manifest draws on",
        attribution="see the manifest's sources",
        changes="images read through inference/transforms.py as listed in the manifest",
    )
