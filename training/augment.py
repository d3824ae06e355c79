"""Training-time augmentation on prepared inputs, moving the boxes with the pixels.

Geometry acts on the image as served: it is anchored top-left and padded right and below, so the
mirror is within the content width (the padding stays where service puts it). Small rotations,
scalings and shifts, then brightness, contrast and gamma jitter. Nothing here runs in service.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 on the model input


def _affine(rng: np.random.Generator, rows: int, columns: int) -> torch.Tensor:
    """A rotation (within 10 degrees) and scaling (0.9-1.1) about the content's centre, and a shift
    of up to 5 %, as a 3 x 3 matrix from input to output pixel coordinates."""
    angle, scale = math.radians(rng.uniform(-10, 10)), rng.uniform(0.9, 1.1)
    tx, ty = rng.uniform(-0.05, 0.05) * columns, rng.uniform(-0.05, 0.05) * rows
    cx, cy = columns / 2, rows / 2
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return torch.tensor(
        [[c, -s, cx - c * cx + s * cy + tx], [s, c, cy - s * cx - c * cy + ty], [0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )


def _warp(pixels: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    size = pixels.shape[-1]
    to_unit = torch.tensor(
        [[2 / size, 0, 1 / size - 1], [0, 2 / size, 1 / size - 1], [0, 0, 1.0]], dtype=torch.float64
    )
    theta = (to_unit @ torch.linalg.inv(forward) @ torch.linalg.inv(to_unit))[:2].float()[None]
    grid = F.affine_grid(theta, [1, 1, size, size], align_corners=False)
    warped: torch.Tensor = F.grid_sample(pixels[None], grid, align_corners=False, padding_mode="zeros")[0]
    return warped


def _move(box: Box, forward: torch.Tensor, size: int) -> Box | None:
    """The box through the transform: its corners' bounding box, shrunk back by the growth a rotation
    adds (a rotated box's bounding box overstates the fracture); None when it leaves the image."""
    x0, y0, x1, y1 = box
    corners = torch.tensor([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], dtype=torch.float64)
    moved = corners @ forward.T
    lo, hi = moved[:, :2].min(0).values, moved[:, :2].max(0).values
    angle = math.atan2(float(forward[1, 0]), float(forward[0, 0]))
    growth = abs(math.cos(angle)) + abs(math.sin(angle))
    (mx, my), (w, h) = ((lo + hi) / 2).tolist(), ((hi - lo) / growth).tolist()
    out = (
        max(0.0, mx - w / 2),
        max(0.0, my - h / 2),
        min(float(size), mx + w / 2),
        min(float(size), my + h / 2),
    )
    return out if out[2] - out[0] > 1 and out[3] - out[1] > 1 else None


def augment(
    pixels: torch.Tensor, boxes: Sequence[Box], content: tuple[int, int], rng: np.random.Generator
) -> tuple[torch.Tensor, list[Box]]:
    """One random variant of a prepared image (1 x size x size, 0-1) and its boxes.

    ``content`` is the image's (rows, columns) on the input, the rest being padding.
    """
    rows, columns = content
    size = pixels.shape[-1]
    moved: list[Box] = list(boxes)
    if rng.random() < 0.5:
        pixels = pixels.clone()
        pixels[..., :columns] = pixels[..., :columns].flip(-1)
        moved = [(columns - x1, y0, columns - x0, y1) for x0, y0, x1, y1 in moved]
    forward = _affine(rng, rows, columns)
    pixels = _warp(pixels, forward)
    kept = [box for box in (_move(b, forward, size) for b in moved) if box is not None]
    gain, bias, gamma = rng.uniform(0.85, 1.15), rng.uniform(-0.05, 0.05), math.exp(rng.uniform(-0.2, 0.2))
    return (pixels.clamp(0, 1) ** gamma * gain + bias).clamp(0, 1), kept
