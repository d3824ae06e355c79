"""A network's outputs -> each image's probability and its detections: the one reading of every
architecture's heads, shared by the pipelines, evaluation and training (what is measured is what runs).

- ``classifier-lite0``: an image logit; no boxes.
- ``centrepoint-lite0``: box centres and sizes; the image's probability is its most confident box.
- ``fracture-lite0``: an image logit beside the boxes; the logit decides, the boxes show where.
With ``test_time_flip``, the image logit is averaged with that of the image mirrored left-right (within
its content: the padding stays on the right, as it is served).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from inference.networks import STRIDE
from inference.transforms import Prepared


@dataclass(frozen=True)
class Detection:
    """A box on the model input: corners in input pixels and its score (0-1)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float


@dataclass(frozen=True)
class ImageResult:
    """What a network says of one image: its probability and its boxes, most confident first."""

    probability: float
    detections: tuple[Detection, ...] = ()


def decode(
    heatmap_logits: torch.Tensor, log_sizes: torch.Tensor, max_boxes: int = 10, min_score: float = 0.05
) -> list[list[Detection]]:
    """Peaks of the centre heatmap (3x3 local maxima) -> boxes, per image of the batch."""
    scores = torch.sigmoid(heatmap_logits.float())[:, 0]
    peaks = scores == F.max_pool2d(scores[:, None], 3, stride=1, padding=1)[:, 0]
    sizes = torch.exp(log_sizes.float().clamp(-4.0, 6.0)) * STRIDE
    batches: list[list[Detection]] = []
    width = scores.shape[-1]
    for index in range(scores.shape[0]):
        candidate = torch.where(peaks[index], scores[index], torch.zeros_like(scores[index])).flatten()
        top = torch.topk(candidate, k=min(max_boxes, candidate.numel()))
        boxes = []
        for score, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            if score < min_score:
                break
            row, column = divmod(flat, width)
            cx, cy = (column + 0.5) * STRIDE, (row + 0.5) * STRIDE
            w, h = (float(v) for v in sizes[index, :, row, column])
            boxes.append(Detection(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score))
        batches.append(boxes)
    return batches


def mirrored(batch: torch.Tensor, inputs: Sequence[Prepared]) -> torch.Tensor:
    """Each image mirrored left-right within its content width (the padding stays where it was)."""
    flipped = batch.clone()
    for index, prepared in enumerate(inputs):
        columns = max(1, round(prepared.content_columns))
        flipped[index, ..., :columns] = batch[index, ..., :columns].flip(-1)
    return flipped


def run(
    network: Callable[[torch.Tensor], Any],  # the torch module, or its ONNX Runtime runner
    architecture: str,
    inputs: Sequence[Prepared],
    device: torch.device,
    test_time_flip: bool = False,
) -> list[ImageResult]:
    """Each input's probability and detections (inference mode; the network in eval mode)."""
    batch = torch.stack([p.pixels for p in inputs]).to(device)
    with torch.inference_mode(), _autocast(device):
        outputs = network(batch)
        flipped = (
            network(mirrored(batch, inputs))
            if test_time_flip and architecture != "centrepoint-lite0"
            else None
        )
    if architecture == "centrepoint-lite0":
        found = decode(*outputs)
        return [ImageResult(max((d.score for d in boxes), default=0.0), tuple(boxes)) for boxes in found]
    logits = outputs[0] if architecture == "fracture-lite0" else outputs
    probabilities = torch.sigmoid(logits.float())
    if flipped is not None:
        flipped_logits = flipped[0] if architecture == "fracture-lite0" else flipped
        probabilities = (probabilities + torch.sigmoid(flipped_logits.float())) / 2
    found = decode(*outputs[1:]) if architecture == "fracture-lite0" else [[] for _ in inputs]
    return [
        ImageResult(float(p), tuple(boxes)) for p, boxes in zip(probabilities.tolist(), found, strict=True)
    ]


def _autocast(device: torch.device) -> torch.autocast:
    """Mixed precision on GPU; plain float32 on CPU (what the model cards measure)."""
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda")
