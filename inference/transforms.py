"""Display values -> model input and back: the one definition inference, training and evaluation use.

Steps, in order (the first four in ``triage.imaging``): decode; Modality LUT (rescale); VOI LUT or
window (else a 0.5-99.5 percentile window); MONOCHROME1 inverted so bone and dense tissue are bright;
then here: pixels made square in
millimetres (Pixel Spacing or Imager Pixel Spacing); long side resized to the model's size and the
rest padded; mammograms mirrored so the chest wall is on the left whatever the laterality. The
geometry is kept, so a box found on the model input maps back onto the source image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name

from triage.header_facts import HeaderFacts


@dataclass(frozen=True)
class Prepared:
    """A model input (1 x size x size, values 0-1) and how it maps onto the source image."""

    pixels: torch.Tensor
    source_rows: int
    source_columns: int
    scale_rows: float  # source pixels per input pixel, along rows
    scale_columns: float
    mirrored: bool  # left-right, before padding: the image stays anchored top-left

    @property
    def content_columns(self) -> float:
        """Width of the image on the input, in input pixels (the rest is padding)."""
        return self.source_columns / self.scale_columns

    def box_to_source(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """Map a box (x0, y0, x1, y1) on the model input to source pixel coordinates."""
        x0, y0, x1, y1 = box
        if self.mirrored:
            x0, x1 = self.content_columns - x1, self.content_columns - x0
        return (
            float(np.clip(x0 * self.scale_columns, 0, self.source_columns)),
            float(np.clip(y0 * self.scale_rows, 0, self.source_rows)),
            float(np.clip(x1 * self.scale_columns, 0, self.source_columns)),
            float(np.clip(y1 * self.scale_rows, 0, self.source_rows)),
        )

    def box_from_source(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """Map a box in source pixel coordinates onto the model input (used for training labels)."""
        x0, y0, x1, y1 = box
        x0, x1 = x0 / self.scale_columns, x1 / self.scale_columns
        y0, y1 = y0 / self.scale_rows, y1 / self.scale_rows
        if self.mirrored:
            x0, x1 = self.content_columns - x1, self.content_columns - x0
        return (x0, y0, x1, y1)


def prepare(pixels: np.ndarray, meta: HeaderFacts, size: int) -> Prepared:
    """Turn 0-1 pixels into a square model input of ``size``, keeping the geometry."""
    rows, columns = pixels.shape
    row_mm, column_mm = meta.pixel_spacing_mm or (1.0, 1.0)
    # Physical extent in units of the finer spacing: makes anisotropic pixels square before resizing.
    finest = min(row_mm, column_mm)
    height, width = rows * row_mm / finest, columns * column_mm / finest
    factor = size / max(height, width)
    out_rows, out_columns = max(1, round(height * factor)), max(1, round(width * factor))
    image = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None, None]
    resized = F.interpolate(
        image, size=(out_rows, out_columns), mode="bilinear", antialias=True, align_corners=False
    )
    mirrored = meta.modality == "MG" and meta.chest_wall_on_the_right
    if mirrored:  # one canonical orientation: chest wall on the left edge
        resized = torch.flip(resized, dims=[-1])
    canvas = torch.zeros(1, size, size, dtype=torch.float32)
    canvas[:, :out_rows, :out_columns] = resized[0]
    return Prepared(canvas, rows, columns, rows / out_rows, columns / out_columns, mirrored)
