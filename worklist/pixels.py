"""An image at full bit depth for the page's reading viewer: the Modality LUT applied, sized down by
area averaging (never re-windowed to 8 bits), as little-endian uint16 with what the browser needs to
window it: the stored offset and scale, the image's own default window, MONOCHROME1, and the row
direction (PatientOrientation) that hangs a mammogram. A re-windowed 8-bit PNG loses the contrast a
reader looks for when they move the window; these values keep it.

The default window is the header's first (Window Center/Width, in modality units); without one, or
when the image carries a non-linear VOI LUT (which the viewer does not apply), the 0.5-99.5
percentiles of the values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydicom import Dataset
from pydicom.pixels.processing import apply_modality_lut

from triage.imaging import stored_pixels


@dataclass(frozen=True)
class FullDepth:
    values: bytes  # rows x columns uint16, little-endian, row by row
    rows: int
    columns: int
    source_rows: int
    source_columns: int
    offset: float  # modality value = stored value * scale + offset
    scale: float
    window_center: float  # in modality units
    window_width: float
    invert: bool  # MONOCHROME1: high values are dark
    row_direction: str  # PatientOrientation's first value (e.g. "A", "P\\F"), empty when absent

    def headers(self) -> dict[str, str]:
        return {
            "X-Rows": str(self.rows), "X-Columns": str(self.columns),
            "X-Source-Rows": str(self.source_rows), "X-Source-Columns": str(self.source_columns),
            "X-Value-Offset": f"{self.offset:g}", "X-Value-Scale": f"{self.scale:g}",
            "X-Window-Center": f"{self.window_center:g}", "X-Window-Width": f"{self.window_width:g}",
            "X-Invert": "1" if self.invert else "0", "X-Row-Direction": self.row_direction,
        }  # fmt: skip


def _shrink(values: np.ndarray, longest_side: int) -> np.ndarray:
    """Area average over whole blocks so the longest side is at most ``longest_side``."""
    factor = math.ceil(max(values.shape) / longest_side)
    if factor <= 1:
        return values
    rows, columns = (values.shape[0] // factor) * factor, (values.shape[1] // factor) * factor
    blocks = values[:rows, :columns].reshape(rows // factor, factor, columns // factor, factor)
    shrunk: np.ndarray = blocks.mean(axis=(1, 3), dtype=np.float32)
    return shrunk


def _first(value: object) -> float:
    return float(value if isinstance(value, str | int | float) else value[0])  # type: ignore[index]


def full_depth(ds: Dataset, longest_side: int) -> FullDepth:
    """Frame 0 of ``ds`` (its Pixel Data read) at full depth, at most ``longest_side`` on a side.

    Raises:
        UnreadableImage: the pixel data cannot be decoded, or would decode past the cap.
    """
    stored = stored_pixels(ds, first_frame=True)
    source_rows, source_columns = stored.shape
    # float32 holds every 16-bit value exactly, at half the memory of float64 (a mammogram: 50 MB)
    modality = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    values = _shrink(modality, longest_side)
    low, high = float(values.min()), float(values.max())
    scale = max(1.0, (high - low) / 65535)  # 16 bits hold any CR, DX or MG range at scale 1
    packed = np.clip(np.round((values - low) / scale), 0, 65535).astype("<u2")
    if "WindowCenter" in ds and "WindowWidth" in ds and "VOILUTSequence" not in ds:
        center, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
    else:
        lower, upper = (float(v) for v in np.percentile(values, (0.5, 99.5)))
        center, width = (lower + upper) / 2, max(upper - lower, 1.0)
    orientation = ds.get("PatientOrientation") or []
    row_direction = str(orientation[0]) if len(orientation) >= 1 else ""
    return FullDepth(
        values=packed.tobytes(), rows=packed.shape[0], columns=packed.shape[1],
        source_rows=source_rows, source_columns=source_columns, offset=low, scale=scale,
        window_center=center, window_width=width,
        invert=str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1", row_direction=row_direction,
    )  # fmt: skip
