"""Detector output -> boxes, the study's fracture probability, and its state.

States (from two thresholds in the model card):
- FRACTURE: probability at or above the high-specificity threshold;
- DOUBT: at or above the high-sensitivity threshold;
- NO FRACTURE: below it, the only state that may mark a patient "eligible for discharge per
  local protocol";
- NOT ANALYSED: out of scope or any failure (decided by the caller, never here by default).
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F  # noqa: N812

from inference.networks import STRIDE
from inference.reading import read_study
from inference.schemas import Analysed, ModelIdentity, Skipped
from triage.imaging import UnreadableImage
from triage.messages import AnalyseStudy

if TYPE_CHECKING:  # model.py needs Thresholds from here
    from inference.model import LoadedModel


class FractureState(enum.StrEnum):
    FRACTURE = "FRACTURE"
    DOUBT = "DOUBT"
    NO_FRACTURE = "NO FRACTURE"
    NOT_ANALYSED = "NOT ANALYSED"


@dataclass(frozen=True)
class Box:
    """A detection on the model input: corners in input pixels and its score (0-1)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float


@dataclass(frozen=True)
class Thresholds:
    """Operating points from the model card; ``doubt`` is the lower (high-sensitivity) one."""

    fracture: float
    doubt: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.doubt <= self.fracture <= 1.0:
            raise ValueError(
                f"thresholds must satisfy 0 <= doubt ({self.doubt}) <= fracture ({self.fracture}) <= 1"
            )


def decode(
    heatmap_logits: torch.Tensor, log_sizes: torch.Tensor, max_boxes: int = 10, min_score: float = 0.05
) -> list[list[Box]]:
    """Peaks of the centre heatmap (3x3 local maxima) -> boxes, per image of the batch."""
    scores = torch.sigmoid(heatmap_logits.float())[:, 0]
    peaks = scores == F.max_pool2d(scores[:, None], 3, stride=1, padding=1)[:, 0]
    sizes = torch.exp(log_sizes.float().clamp(-4.0, 6.0)) * STRIDE
    batches: list[list[Box]] = []
    for index in range(scores.shape[0]):
        candidate = torch.where(peaks[index], scores[index], torch.zeros_like(scores[index])).flatten()
        top = torch.topk(candidate, k=min(max_boxes, candidate.numel()))
        boxes = []
        width = scores.shape[-1]
        for score, flat in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            if score < min_score:
                break
            row, column = divmod(flat, width)
            cx, cy = (column + 0.5) * STRIDE, (row + 0.5) * STRIDE
            w, h = (float(v) for v in sizes[index, :, row, column])
            boxes.append(Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score))
        batches.append(boxes)
    return batches


def study_probability(boxes_per_image: Sequence[Sequence[Box]]) -> float:
    """The study's fracture probability: its most confident box on any image (0 with none)."""
    return max((box.score for boxes in boxes_per_image for box in boxes), default=0.0)


def state_for(probability: float, thresholds: Thresholds) -> FractureState:
    """FRACTURE / DOUBT / NO FRACTURE for a valid probability; NOT ANALYSED for an invalid one."""
    if not math.isfinite(probability) or not 0.0 <= probability <= 1.0:
        return FractureState.NOT_ANALYSED
    if probability >= thresholds.fracture:
        return FractureState.FRACTURE
    if probability >= thresholds.doubt:
        return FractureState.DOUBT
    return FractureState.NO_FRACTURE


def eligible_for_discharge(state: FractureState) -> bool:
    """Only NO FRACTURE may mark a patient eligible for discharge per local protocol."""
    return state is FractureState.NO_FRACTURE


class FracturePipeline:
    """A trauma study's instances -> boxes per image -> FRACTURE / DOUBT / NO FRACTURE."""

    def __init__(self, model: LoadedModel, storage_dir: Path) -> None:
        self._model = model
        self._storage_dir = storage_dir
        card = model.card
        self.identity = ModelIdentity(card.name, card.version, card.weights_sha256)

    def __call__(self, payload: AnalyseStudy) -> Analysed | Skipped:
        started = time.perf_counter()
        card = self._model.card
        try:
            images = read_study(payload, self._storage_dir, card.input_size)
        except UnreadableImage as error:
            return Skipped(str(error), self.identity)
        read_ms = (time.perf_counter() - started) * 1000
        batch = torch.stack([image.prepared.pixels for image in images]).to(self._model.device)
        with torch.inference_mode(), self._model.autocast():
            heatmap, sizes = self._model.network(batch)
        boxes = decode(heatmap, sizes)
        probability = study_probability(boxes)
        state = state_for(probability, card.thresholds)
        if state is FractureState.NOT_ANALYSED:
            return Skipped(f"invalid model output (probability {probability})", self.identity)
        outcome = {
            "state": str(state),
            "probability": round(probability, 6),
            "eligible_for_discharge": eligible_for_discharge(state),
            "thresholds": {"fracture": card.thresholds.fracture, "doubt": card.thresholds.doubt},
            "images": [
                {
                    "sop_instance_uid": image.ref.sop_instance_uid,
                    "boxes": [
                        {
                            "corners": list(image.prepared.box_to_source((b.x0, b.y0, b.x1, b.y1))),
                            "score": round(b.score, 6),
                        }
                        for b in image_boxes
                        if b.score >= card.thresholds.doubt
                    ],
                }
                for image, image_boxes in zip(images, boxes, strict=True)
            ],
            "skipped": payload.skipped,
        }
        total_ms = (time.perf_counter() - started) * 1000
        return Analysed(
            summary=f"{state} (probability {probability:.3f})",
            model=self.identity,
            outcome=outcome,
            inputs=[{"sop_instance_uid": i.ref.sop_instance_uid, "sha256": i.ref.sha256} for i in images],
            timings_ms={"read": round(read_ms, 1), "total": round(total_ms, 1)},
            device=str(self._model.device),
        )
