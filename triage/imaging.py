"""DICOM pixel data to display values: decoding, Modality and VOI LUTs, 0-1 floats (bright = dense).

The one reading of pixels that the model (inference/transforms.py), training, the summary image and
the worklist's image view share. No torch here: the web API renders images with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut


class UnreadableImage(Exception):
    """The pixels cannot be turned into a model input; the study takes the conservative path."""


@dataclass(frozen=True)
class ImageMeta:
    """What preprocessing needs to know about an image besides its pixels."""

    photometric_interpretation: str = "MONOCHROME2"
    pixel_spacing_mm: tuple[float, float] | None = None  # (row spacing, column spacing)
    laterality: str = ""
    view: str = ""
    modality: str = ""
    # First value of Patient Orientation (0020,0020): where the image's rows point, e.g. "A" or "P".
    row_direction: str = ""

    @property
    def chest_wall_on_the_right(self) -> bool:
        """For a mammogram: rows pointing posterior, or (no orientation given) a right breast."""
        if self.row_direction:
            return self.row_direction.startswith("P")
        return self.laterality == "R"


def meta_from_dataset(ds: Dataset) -> ImageMeta:
    """Read the preprocessing facts from DICOM attributes, by keyword."""
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    view = ""
    if ds.get("ViewCodeSequence"):
        from dicom_node.routing import facts_from_dataset  # one reading of views, shared with routing

        view = facts_from_dataset(ds)["view"]
    return ImageMeta(
        photometric_interpretation=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        pixel_spacing_mm=(float(spacing[0]), float(spacing[1])) if spacing and len(spacing) == 2 else None,
        laterality=str(ds.get("ImageLaterality", "") or ds.get("Laterality", "")).upper(),
        view=view or str(ds.get("ViewPosition", "")).upper(),
        modality=str(ds.get("Modality", "")).upper(),
        row_direction=str((ds.get("PatientOrientation") or [""])[0]).upper(),
    )


def _first(value: object) -> float:
    """The first of a multi-valued DS (several windows may be offered), or the value itself."""
    if isinstance(value, str | bytes | int | float):
        return float(value)
    return float(value[0])  # type: ignore[index]


def window(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    """Apply the Modality LUT and the VOI LUT or window; return values scaled to 0-1.

    The common case (linear rescale, LINEAR window: PS3.3 C.11.1 and C.11.2.1.2.1) is one affine
    map and a clip in float32, about ten times faster on a radiograph than pydicom's general
    functions, which handle LUT sequences and the other VOI functions.
    """
    linear = "ModalityLUTSequence" not in ds and "VOILUTSequence" not in ds
    if linear and str(ds.get("VOILUTFunction", "LINEAR")).upper() == "LINEAR":
        return _linear_window(ds, stored)
    values = apply_modality_lut(stored, ds).astype(np.float32)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        values = apply_voi_lut(values, ds, index=0).astype(np.float32)
        low, high = float(values.min()), float(values.max())
    else:
        low, high = (float(v) for v in np.percentile(values, (0.5, 99.5)))
    if not np.isfinite([low, high]).all() or high <= low:
        raise UnreadableImage("the image has no usable range of values (blank or constant)")
    scaled: np.ndarray = np.clip((values - low) / (high - low), 0.0, 1.0)
    return scaled


def _linear_window(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        if width < 1:
            raise UnreadableImage(f"window width {width} is invalid (PS3.3 C.11.2.1.2: at least 1)")
        # y = ((x - (c - 0.5)) / (w - 1) + 0.5), clipped to 0-1, with x = slope * stored + intercept
        scale = slope / max(width - 1, 1e-6)
        offset = (intercept - (centre - 0.5)) / max(width - 1, 1e-6) + 0.5
    else:
        sample = stored[::4, ::4].astype(np.float32) * slope + intercept
        low, high = (float(v) for v in np.percentile(sample, (0.5, 99.5)))
        if not np.isfinite([low, high]).all() or high <= low:
            raise UnreadableImage("the image has no usable range of values (blank or constant)")
        scale, offset = slope / (high - low), (intercept - low) / (high - low)
    pixels = stored.astype(np.float32)
    pixels *= scale
    pixels += offset
    np.clip(pixels, 0.0, 1.0, out=pixels)
    return pixels


def read_dicom(source: Path | BinaryIO) -> tuple[np.ndarray, ImageMeta]:
    """Decode one stored instance (a path or an open file) into 0-1 float pixels (bright = dense).

    Raises:
        UnreadableImage: the file or its pixel data cannot be decoded, or is not one 2-D image.
    """
    try:
        ds = dcmread(source)
        stored = ds.pixel_array
    except (
        InvalidDicomError,
        AttributeError,
        ValueError,
        RuntimeError,
        NotImplementedError,
        OSError,
    ) as error:
        raise UnreadableImage(f"pixel data cannot be decoded: {type(error).__name__}: {error}") from error
    if stored.ndim != 2:
        raise UnreadableImage(f"expected one 2-D frame, found pixel data of shape {stored.shape}")
    meta = meta_from_dataset(ds)
    pixels = window(ds, stored)
    if meta.photometric_interpretation == "MONOCHROME1":
        pixels = 1.0 - pixels
    return pixels, meta
