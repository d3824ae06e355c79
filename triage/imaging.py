"""DICOM images, read once: pixels as display values, PNG (the header facts are ``triage.header_facts``).

The one reading of pixels that the workers (model inputs, the summary image), training and the
worklist's image view share. Pixels become 0-1
floats, bright = dense: decoding, Modality LUT, VOI LUT or window, MONOCHROME1 inverted. No torch
here: the listener and the web API use it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom import config as pydicom_config
from pydicom.errors import InvalidDicomError
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array
from pydicom.valuerep import validate_value

from triage.header_facts import HeaderFacts, header_facts

# The largest single frame triage decodes: a 4096 x 4096 image at 32 bits is 64 MiB; a full-field
# mammogram (about 4000 x 3300 at 16 bits) is a third of that. Checked from the header before any
# decoding, so that a small RLE or JPEG-LS object cannot expand into gigabytes in a worker or the API.
MAX_DECODED_BYTES = 64 << 20


class UnreadableImage(Exception):
    """The pixels cannot be turned into display values; a study holding it takes the conservative path."""


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


@dataclass(frozen=True)
class DecodedImage:
    """One instance read once: its header (without pixel data), its facts and its display values."""

    dataset: Dataset
    facts: HeaderFacts
    pixels: np.ndarray


def display_values(ds: Dataset, first_frame: bool = False) -> np.ndarray:
    """Decode a parsed data set's pixel data into 0-1 floats (bright = dense). ``first_frame``: of
    a multi-frame image (tomosynthesis), decode frame 0 alone, as a page shows it.

    Raises:
        UnreadableImage: the pixel data cannot be decoded, is not one 2-D image, or would decode to
            more than ``MAX_DECODED_BYTES`` (checked from the header, before decoding).
    """
    pixels = window(ds, stored_pixels(ds, first_frame))
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")) == "MONOCHROME1":
        pixels = 1.0 - pixels
    return pixels


def stored_pixels(ds: Dataset, first_frame: bool = False) -> np.ndarray:
    """The stored values of one 2-D frame, decoded under the size cap (``first_frame``: frame 0 of
    a multi-frame image, the only one decoded).

    Raises:
        UnreadableImage: as ``display_values``.
    """
    check_decoded_size(ds, one_frame_of_many=first_frame)
    try:
        if first_frame and int(ds.get("NumberOfFrames") or 1) > 1:
            stored = pixel_array(ds, index=0)  # only that frame is decoded
        else:
            stored = ds.pixel_array
    except (AttributeError, ValueError, RuntimeError, NotImplementedError, OSError) as error:
        raise UnreadableImage(f"pixel data cannot be decoded: {type(error).__name__}: {error}") from error
    if stored.ndim != 2:
        raise UnreadableImage(f"expected one 2-D frame, found pixel data of shape {stored.shape}")
    return np.asarray(stored)


_DATE_TIME_VRS = frozenset({"DA", "TM", "DT", "AS"})


def blank_malformed_dates(ds: Dataset) -> list[str]:
    """Empty each top-level date, time or age whose value breaks its VR's rules; returns their
    keywords. A result copies the patient and study modules from its sources, and a birth date
    sent as ``1980-01-01`` would otherwise make the SR impossible to build (and its error message
    would quote the date). Empty is what the standard allows for these Type 2 attributes."""
    blanked = []
    for element in ds:
        if element.VR not in _DATE_TIME_VRS or element.value in (None, ""):
            continue
        try:
            validate_value(element.VR, element.value, pydicom_config.RAISE)
        except ValueError:
            element.value = ""
            blanked.append(element.keyword or str(element.tag))
    return blanked


def check_decoded_size(ds: Dataset, limit: int = MAX_DECODED_BYTES, one_frame_of_many: bool = False) -> None:
    """Refuse, before decoding, pixel data that is not one frame or that would decode past ``limit``
    (``one_frame_of_many``: any number of frames, of which one will be decoded, under ``limit``).

    Raises:
        UnreadableImage: more than one frame, a size attribute missing or malformed, or too large.
    """
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError) as error:
        raise UnreadableImage(
            f"the image size cannot be read from the header: {type(error).__name__}"
        ) from error
    if frames < 1 or (frames != 1 and not one_frame_of_many):
        raise UnreadableImage(f"expected one 2-D frame, the header announces {frames} frames")
    if min(rows, columns, samples, bits) <= 0:
        raise UnreadableImage(f"the header announces an empty image ({rows} x {columns})")
    size = rows * columns * samples * ((bits + 7) // 8)
    if size > limit:
        raise UnreadableImage(
            f"the image would decode to {size >> 20} MiB ({rows} x {columns} x {samples} at {bits} bits), "
            f"more than the {limit >> 20} MiB triage decodes"
        )


def read_image(source: Path | BinaryIO, first_frame: bool = False) -> DecodedImage:
    """Read one stored instance (a path or an open file): header facts and display values
    (``first_frame``: frame 0 of a multi-frame image; see ``display_values``).

    Raises:
        UnreadableImage: the file is not DICOM, or its pixel data cannot be decoded.
    """
    try:
        ds = dcmread(source)
    except (InvalidDicomError, AttributeError, ValueError, OSError, EOFError) as error:
        raise UnreadableImage(f"the file cannot be read as DICOM: {type(error).__name__}: {error}") from error
    return decode_image(ds, first_frame)


def decode_image(ds: Dataset, first_frame: bool = False) -> DecodedImage:
    """A read data set's header facts and display values (``first_frame``: frame 0 of a multi-frame
    image); its Pixel Data is dropped once decoded.

    Raises:
        UnreadableImage: the pixel data cannot be decoded, or would decode past the cap.
    """
    pixels = display_values(ds, first_frame)
    del ds.PixelData  # the header stays for reports; the pixels live on as display values
    return DecodedImage(ds, header_facts(ds), pixels)


def png(pixels: np.ndarray, longest_side: int) -> bytes:
    """Display values as an 8-bit greyscale PNG no larger than ``longest_side``."""
    picture = Image.fromarray((pixels * 255).round().astype("uint8"))
    picture.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()
