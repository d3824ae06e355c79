"""Patient-level splits, and torch datasets of ``Sample`` rows built on ``inference.transforms``.

Splits are made by group (patient, or the closest proxy a data set offers), never by image.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch

from inference.networks import STRIDE
from inference.transforms import Prepared, prepare
from triage.manifests import BoxTuple, Sample


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
