"""Adapters: public data sets' own label files (and the worklist's export) -> ``Sample`` rows.

Each names the group a split must keep together (a patient, or the closest proxy the set offers).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from triage.header_facts import HeaderFacts
from triage.manifests import ManifestError, Sample, parse_boxes
from triage.pipelines import Pipeline


def connected_groups(rows: list[dict[str, str]], keys: tuple[str, ...]) -> list[str]:
    """Each row's group, named after the smallest ``keys[0]`` value in it: rows sharing a value in any
    of ``keys`` are one group (a copy of an image can link two blocks of FracAtlas numbers, so the
    blocks and the copy groups are merged)."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for row in rows:
        nodes = [f"{key}:{row[key]}" for key in keys if row.get(key)]
        for node in nodes[1:]:
            parent[find(node)] = find(nodes[0])
    roots = [find(f"{keys[0]}:{row[keys[0]]}") for row in rows]
    names: dict[str, str] = {}
    for root, row in zip(roots, rows, strict=True):
        names[root] = min(names.get(root, row[keys[0]]), row[keys[0]])
    return [names[root] for root in roots]


def fracatlas(folder: Path) -> list[Sample]:
    """FracAtlas (CC BY 4.0): fracture labels and boxes. Each radiograph is its own study; splits keep
    connected groups together: its blocks of 40 image numbers (a proxy for patients) joined by the
    near-copies its ``dup_group`` names. Body region and orthopaedic hardware are subgroups."""
    with (folder / "labels.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    keys = ("group_id", "dup_group") if rows and "dup_group" in rows[0] else ("group_id",)
    return [
        Sample(
            label=int(row["label"] == "fracture"),
            group=group,
            meta=HeaderFacts(modality="DX"),
            boxes=parse_boxes(row["boxes"]),
            path=folder / row["file"],
            exam=Path(row["file"]).stem,
            subgroups={
                "body_part": row.get("body_part", ""),
                "hardware": "yes" if row.get("hardware") == "1" else "no",
            },
        )
        for row, group in zip(rows, connected_groups(rows, keys), strict=True)
    ]


def mini_mias(folder: Path, positive: str = "malignant") -> list[Sample]:
    """mini-MIAS (research use, cite it): MLO views; positive is ``malignant`` or any ``abnormal``."""
    positives = {"malignant"} if positive == "malignant" else {"malignant", "benign"}
    with (folder / "labels.csv").open(newline="") as stream:
        return [
            Sample(
                label=int(row["label"] in positives),
                group=row["patient_id"],
                meta=HeaderFacts(modality="MG", laterality=row["laterality"], view=row["view"]),
                boxes=parse_boxes(row["boxes"]),
                path=folder / row["file"],
            )
            for row in csv.DictReader(stream)
        ]


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
                    meta=HeaderFacts(
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
                    meta=HeaderFacts(modality="MG", laterality=row["laterality"], view=row["view_position"]),
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
                    meta=HeaderFacts(
                        modality=Pipeline(row["pipeline"]).modality,
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
    "fracatlas": fracatlas,
    "mini_mias": lambda folder: mini_mias(folder, "malignant"),
    "mini_mias_abnormal": lambda folder: mini_mias(folder, "abnormal"),
    "cbis_ddsm": cbis_ddsm,
    "vindr_mammo": vindr_mammo,
    "worklist_feedback": worklist_feedback,
}
