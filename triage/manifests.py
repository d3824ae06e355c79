"""The labelled-data format that training, evaluation and the label export share: ``Sample`` rows
and the manifest CSV, one row per image::

    image,label,boxes,view,laterality,patient_id,exam_id,split,site,device,age_band

``image`` is a DICOM or PNG/JPEG path relative to the manifest's folder; ``label`` is 1 (fracture,
or a positive screen finding) or 0; ``boxes`` is ``x0,y0,x1,y1`` in source pixels, several joined
by ``;``; ``split`` is train, validation or test, or empty to split by patient; the last three
columns are optional subgroups that evaluation reports on. Splits are by patient, never by
image: a patient whose rows name two different splits is refused.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from triage.cards import DatasetCredit
from triage.header_facts import HeaderFacts
from triage.imaging import read_image

BoxTuple = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    """One labelled image: where its pixels come from, its meta, label, boxes (source pixels), group."""

    label: int
    group: str
    meta: HeaderFacts
    boxes: tuple[BoxTuple, ...] = ()
    path: Path | None = None
    pixels: np.ndarray | None = field(default=None, compare=False, repr=False)
    exam: str = ""  # the screening exam or study the image belongs to; empty: the group
    split: str = ""  # train / validation / test when the data set fixes it; empty: by group hash
    subgroups: dict[str, str] = field(default_factory=dict, compare=False)  # site, device, age band

    def load(self) -> np.ndarray:
        """0-1 float pixels, bright = dense, through the same steps inference uses."""
        if self.pixels is not None:
            return self.pixels
        assert self.path is not None
        if self.path.suffix.lower() == ".dcm":
            return read_image(self.path).pixels
        with Image.open(self.path) as image:
            pixels: np.ndarray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
            return pixels


def parse_boxes(text: str) -> tuple[BoxTuple, ...]:
    """Boxes written ``x0,y0,x1,y1`` in source pixels, several joined by ``;`` (labels CSVs, manifests).

    Raises:
        ValueError: a box that is not four numbers, or has x0 >= x1 or y0 >= y1.
    """
    boxes = []
    for part in filter(None, text.split(";")):
        try:
            x0, y0, x1, y1 = (float(v) for v in part.split(","))
        except ValueError as error:
            raise ValueError(f"a box is x0,y0,x1,y1, found {part!r}") from error
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"box {part!r} has x0 >= x1 or y0 >= y1")
        boxes.append((x0, y0, x1, y1))
    return tuple(boxes)


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
                    meta=HeaderFacts(modality=modality, laterality=row["laterality"], view=row["view"]),
                    boxes=boxes,
                    path=image if image.is_absolute() else path.parent / image,
                    exam=row["exam_id"] or patient,
                    split=row["split"],
                    subgroups={k: row[k] for k in SUBGROUPS if row.get(k)},
                )
            )
    return samples


def manifest_credit(path: Path) -> DatasetCredit:
    """The model card's data entry for a manifest: its name and content hash; the sources' licences
    are the manifest owner's to state (add them to the card before promotion)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return DatasetCredit(
        name=f"manifest {path.name} (sha256 {digest})",
        licence="as stated by the sources the manifest draws on",
        attribution="see the manifest's sources",
        changes="images read through inference/transforms.py as listed in the manifest",
    )
