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
from inference.transforms import prepare
from training.augment import augment
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


def assign_folds(samples: Sequence[Sample], folds: int, seed: int) -> dict[str, int]:
    """Each group's fold, ``folds`` of them with about as many positives each: groups in a seeded
    hash order, most positives first, each into the fold with the fewest positives (then images)."""
    stats: dict[str, list[int]] = {}
    for sample in samples:
        counts = stats.setdefault(sample.group, [0, 0])
        counts[0] += 1
        counts[1] += sample.label
    order = sorted(stats, key=lambda g: (-stats[g][1], hashlib.sha256(f"{seed}:{g}".encode()).hexdigest()))
    load = [[0, 0] for _ in range(folds)]
    assigned = {}
    for group in order:
        fold = min(range(folds), key=lambda f: (load[f][1], load[f][0]))
        assigned[group] = fold
        load[fold][0] += stats[group][0]
        load[fold][1] += stats[group][1]
    return assigned


def split_for_fold(
    samples: Sequence[Sample], folds: int, test_fold: int, validation_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Train / validation / test for one fold of a grouped cross-validation: the fold's groups are
    the test part, ``validation_fraction`` of the other groups (by a seeded hash) choose thresholds."""
    fold_of = assign_folds(samples, folds, seed)
    others = sorted(
        {s.group for s in samples if fold_of[s.group] != test_fold},
        key=lambda g: hashlib.sha256(f"{seed}:validation:{g}".encode()).hexdigest(),
    )
    validation_groups = set(others[: round(len(others) * validation_fraction)])
    parts: tuple[list[Sample], list[Sample], list[Sample]] = ([], [], [])
    for sample in samples:
        index = 2 if fold_of[sample.group] == test_fold else 1 if sample.group in validation_groups else 0
        parts[index].append(sample)
    return parts


def centre_targets(boxes: Sequence[BoxTuple], size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian centre heatmap, log box sizes and their mask at the detector's stride, for boxes on
    the model input."""
    cells = size // STRIDE
    heatmap = torch.zeros(1, cells, cells)
    sizes = torch.zeros(2, cells, cells)
    mask = torch.zeros(1, cells, cells)
    ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
    for x0, y0, x1, y1 in boxes:
        w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        column, row = min(max(int(cx), 0), cells - 1), min(max(int(cy), 0), cells - 1)
        sigma = max(0.8, min(w, h) / STRIDE / 4)
        gaussian = torch.exp(-((xs - column) ** 2 + (ys - row) ** 2) / (2 * sigma**2))
        heatmap[0] = torch.maximum(heatmap[0], gaussian)
        sizes[:, row, column] = torch.tensor([math.log(w / STRIDE), math.log(h / STRIDE)])
        mask[0, row, column] = 1.0
    return heatmap, sizes, mask


class ImageDataset(torch.utils.data.Dataset[tuple[torch.Tensor, ...]]):
    """Samples prepared as in service, augmented when training: (pixels, label, heatmap, sizes, mask).

    Prepared inputs are kept in memory as 8-bit (the sources are 8-bit or windowed to 0-1 already), so
    each epoch decodes nothing; a set of 2,580 radiographs at 384 px holds about 380 MB.
    """

    def __init__(self, samples: Sequence[Sample], size: int, augment: bool, seed: int = 0) -> None:
        self.samples = list(samples)
        self.size = size
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self._cache: dict[int, tuple[torch.Tensor, list[BoxTuple], tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _prepared(self, index: int) -> tuple[torch.Tensor, list[BoxTuple], tuple[int, int]]:
        if index not in self._cache:
            sample = self.samples[index]
            prepared = prepare(sample.load(), sample.meta, self.size)
            content = (round(prepared.source_rows / prepared.scale_rows), round(prepared.content_columns))
            pixels = (prepared.pixels * 255).round().to(torch.uint8)
            self._cache[index] = (pixels, [prepared.box_from_source(b) for b in sample.boxes], content)
        return self._cache[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        stored, boxes, content = self._prepared(index)
        pixels = stored.float() / 255
        if self.augment:
            pixels, boxes = augment(pixels, boxes, content, self.rng)
        heatmap, sizes, mask = centre_targets(boxes, self.size)
        return pixels, torch.tensor(float(self.samples[index].label)), heatmap, sizes, mask
