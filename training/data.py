"""Labelled images, patient-level splits, and torch datasets built on ``inference.transforms``.

Adapters turn a public data set's own labels into ``Sample`` rows. Splits are made by group
(patient, or the closest proxy a data set offers), never by image.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inference.networks import STRIDE
from inference.transforms import ImageMeta, Prepared, prepare, read_dicom

BoxTuple = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    """One labelled image: where its pixels come from, its meta, label, boxes (source pixels), group."""

    label: int
    group: str
    meta: ImageMeta
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
            return read_dicom(self.path)[0]
        with Image.open(self.path) as image:
            return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


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


def fracatlas(folder: Path, positive: str = "fracture") -> list[Sample]:
    """FracAtlas (CC BY 4.0): fracture labels and boxes; groups are its blocks of 40 image numbers."""
    with (folder / "labels.csv").open(newline="") as stream:
        return [
            Sample(
                label=int(row["label"] == "fracture"),
                group=row["group_id"],
                meta=ImageMeta(modality="DX"),
                boxes=parse_boxes(row["boxes"]),
                path=folder / row["file"],
            )
            for row in csv.DictReader(stream)
        ]


def mini_mias(folder: Path, positive: str = "malignant") -> list[Sample]:
    """mini-MIAS (research use, cite it): MLO views; positive is ``malignant`` or any ``abnormal``."""
    positives = {"malignant"} if positive == "malignant" else {"malignant", "benign"}
    with (folder / "labels.csv").open(newline="") as stream:
        return [
            Sample(
                label=int(row["label"] in positives),
                group=row["patient_id"],
                meta=ImageMeta(modality="MG", laterality=row["laterality"], view=row["view"]),
                boxes=parse_boxes(row["boxes"]),
                path=folder / row["file"],
            )
            for row in csv.DictReader(stream)
        ]


ADAPTERS: dict[str, Callable[[Path, str], list[Sample]]] = {"fracatlas": fracatlas, "mini_mias": mini_mias}


def readable(samples: Sequence[Sample]) -> tuple[list[Sample], list[str]]:
    """Keep the samples whose pixels decode; name the others (FracAtlas ships three truncated JPEGs)."""
    kept, dropped = [], []
    for sample in samples:
        try:
            sample.load()
        except (OSError, ValueError) as error:
            dropped.append(f"{sample.path}: {error}")
            continue
        kept.append(sample)
    return kept, dropped


def split_by_group(
    samples: Sequence[Sample], validation_fraction: float, test_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Train / validation / test by group, ordered by a seeded hash so the split is reproducible.

    A sample whose ``split`` the data set fixes goes there; the rest are split by group. A group
    (patient) never straddles two parts: the manifest reader refuses a patient with two splits.
    """
    groups = sorted(
        {s.group for s in samples if not s.split},
        key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest(),
    )
    n_test = max(1, round(len(groups) * test_fraction))
    n_validation = round(len(groups) * validation_fraction)
    test_groups = set(groups[:n_test])
    validation_groups = set(groups[n_test : n_test + n_validation])
    parts: tuple[list[Sample], list[Sample], list[Sample]] = ([], [], [])
    fixed = {"train": 0, "validation": 1, "test": 2}
    for sample in samples:
        index = 2 if sample.group in test_groups else 1 if sample.group in validation_groups else 0
        parts[fixed.get(sample.split, index)].append(sample)
    return parts


def centre_targets(
    prepared: Prepared, boxes: Sequence[BoxTuple]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian centre heatmap, log box sizes and their mask at the detector's stride."""
    cells = prepared.pixels.shape[-1] // STRIDE
    heatmap = torch.zeros(1, cells, cells)
    sizes = torch.zeros(2, cells, cells)
    mask = torch.zeros(1, cells, cells)
    ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
    for box in boxes:
        x0, y0, x1, y1 = prepared.box_from_source(box)
        w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        column, row = min(int(cx), cells - 1), min(int(cy), cells - 1)
        sigma = max(0.8, min(w, h) / STRIDE / 4)
        gaussian = torch.exp(-((xs - column) ** 2 + (ys - row) ** 2) / (2 * sigma**2))
        heatmap[0] = torch.maximum(heatmap[0], gaussian)
        sizes[:, row, column] = torch.tensor([math.log(w / STRIDE), math.log(h / STRIDE)])
        mask[0, row, column] = 1.0
    return heatmap, sizes, mask


class ImageDataset(torch.utils.data.Dataset[tuple[torch.Tensor, ...]]):
    """Samples prepared for a network; detection targets when ``detection`` is set."""

    def __init__(
        self, samples: Sequence[Sample], size: int, detection: bool, augment: bool, seed: int = 0
    ) -> None:
        self.samples = list(samples)
        self.size = size
        self.detection = detection
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        sample = self.samples[index]
        prepared = prepare(sample.load(), sample.meta, self.size)
        pixels = prepared.pixels
        if self.augment:  # contrast and brightness jitter only: geometry stays exact for the boxes
            gain, bias = self.rng.uniform(0.85, 1.15), self.rng.uniform(-0.05, 0.05)
            pixels = (pixels * gain + bias).clamp(0.0, 1.0)
        if not self.detection:
            return pixels, torch.tensor(float(sample.label))
        heatmap, sizes, mask = centre_targets(prepared, sample.boxes)
        return pixels, heatmap, sizes, mask
