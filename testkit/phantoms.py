"""Phantoms for tests only: radiographs with a bone and a known fracture line, mammograms with a
known lesion, as 0-1 pixel arrays with their boxes, or wrapped as synthetic DICOM instances."""

from __future__ import annotations

import numpy as np
from pydicom import Dataset

from testkit import synthetic

Box = tuple[float, float, float, float]


def radiograph(size: int, fractured: bool, rng: np.random.Generator) -> tuple[np.ndarray, tuple[Box, ...]]:
    """A bright bone shaft across soft tissue; when fractured, a dark oblique gap through it."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    image = 0.15 + 0.05 * rng.standard_normal((size, size)).astype(np.float32)
    centre = size * rng.uniform(0.35, 0.65)
    half_width = size * rng.uniform(0.07, 0.11)
    distance = np.abs(xs - centre)
    bone = np.clip(1 - (distance / half_width) ** 2, 0, 1)
    cortex = np.exp(-(((distance - half_width * 0.8) / (half_width * 0.15)) ** 2))
    image += 0.5 * bone + 0.3 * cortex
    boxes: tuple[Box, ...] = ()
    if fractured:
        level = size * rng.uniform(0.3, 0.7)
        slope = rng.uniform(-0.4, 0.4)
        line = np.abs(ys - (level + slope * (xs - centre))) < max(1.0, size / 80)
        gap = line & (distance < half_width * 1.1)
        image[gap] = 0.1
        reach = half_width * 1.2
        boxes = (
            (centre - reach, level - abs(slope) * reach - 4, centre + reach, level + abs(slope) * reach + 4),
        )
    return np.clip(image, 0, 1), boxes


def mammogram(size: int, lesion: bool, rng: np.random.Generator) -> tuple[np.ndarray, tuple[Box, ...]]:
    """A half-ellipse breast on the left with fibroglandular texture; a bright blob when ``lesion``."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    inside = (xs / (size * 0.7)) ** 2 + ((ys - size / 2) / (size * 0.45)) ** 2 < 1
    texture = 0.05 * rng.standard_normal((size, size)).astype(np.float32)
    image = np.where(inside, 0.35 + texture, 0.02).astype(np.float32)
    boxes: tuple[Box, ...] = ()
    if lesion:
        cx, cy, r = (
            size * rng.uniform(0.15, 0.45),
            size * rng.uniform(0.3, 0.7),
            size * rng.uniform(0.04, 0.07),
        )
        image += 0.45 * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r**2))
        boxes = ((cx - 2 * r, cy - 2 * r, cx + 2 * r, cy + 2 * r),)
    return np.clip(image, 0, 1), boxes


def to_dicom(ds: Dataset, pixels: np.ndarray, bits: int = 12) -> Dataset:
    """Put 0-1 phantom pixels into a synthetic instance as unsigned integers of ``bits``."""
    stored = np.round(pixels * ((1 << bits) - 1)).astype(np.uint16)
    ds.Rows, ds.Columns = stored.shape
    ds.BitsStored, ds.HighBit = bits, bits - 1
    ds.WindowCenter, ds.WindowWidth = (1 << bits) // 2, 1 << bits
    ds.PixelData = stored.tobytes()
    return ds


def trauma_study(fractured: bool, seed: int, size: int = 256, images: int = 1) -> list[Dataset]:
    """A trauma series of phantom radiographs, one study, as DX instances."""
    rng = np.random.default_rng(seed)
    ids = synthetic.StudyIds()
    return [
        to_dicom(synthetic.dx(ids, instance_number=i + 1), radiograph(size, fractured and i == 0, rng)[0])
        for i in range(images)
    ]


def screen(lesion_in: str | None, seed: int, size: int = 256) -> list[Dataset]:
    """A four-view phantom screen; ``lesion_in`` names the breast ("L"/"R") with a lesion, if any."""
    rng = np.random.default_rng(seed)
    views = synthetic.screen(rows=size, columns=size)
    for ds in views:
        pixels, _ = mammogram(size, ds.ImageLaterality == lesion_in, rng)
        if ds.ImageLaterality == "R":
            pixels = pixels[:, ::-1]  # a right breast's chest wall lies on the image's right
        to_dicom(ds, np.ascontiguousarray(pixels))
    return views
