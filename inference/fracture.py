"""Detector output -> boxes, the study's fracture probability, and its state.

States (from two thresholds in the model card, ``triage.outcomes.FractureThresholds``):
- FRACTURE: probability at or above the high-specificity threshold;
- DOUBT: at or above the high-sensitivity threshold;
- NO FRACTURE: below it, the only state that may mark a patient "eligible for discharge per
  local protocol";
- not analysed: out of scope or any failure (a ``Skipped``, decided by the caller or here for an
  invalid model output, never by default).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

from inference.inputs import StudyImages
from inference.model import LoadedModel
from inference.networks import STRIDE
from inference.transforms import prepare
from triage.cards import FractureCard
from triage.messages import AnalyseStudy
from triage.outcomes import Analysed, Box, FractureOutcome, ImageFindings, Skipped


@dataclass(frozen=True)
class Detection:
    """A detection on the model input: corners in input pixels and its score (0-1)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float


def decode(
    heatmap_logits: torch.Tensor, log_sizes: torch.Tensor, max_boxes: int = 10, min_score: float = 0.05
) -> list[list[Detection]]:
    """Peaks of the centre heatmap (3x3 local maxima) -> boxes, per image of the batch."""
    scores = torch.sigmoid(heatmap_logits.float())[:, 0]
    peaks = scores == F.max_pool2d(scores[:, None], 3, stride=1, padding=1)[:, 0]
    sizes = torch.exp(log_sizes.float().clamp(-4.0, 6.0)) * STRIDE
    batches: list[list[Detection]] = []
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
            boxes.append(Detection(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score))
        batches.append(boxes)
    return batches


def study_probability(boxes_per_image: Sequence[Sequence[Detection]]) -> float:
    """The study's fracture probability: its most confident box on any image (0 with none)."""
    return max((box.score for boxes in boxes_per_image for box in boxes), default=0.0)


class FracturePipeline:
    """A trauma study's images -> boxes per image -> FRACTURE / DOUBT / NO FRACTURE."""

    def __init__(self, model: LoadedModel) -> None:
        assert isinstance(model.card, FractureCard), "the fracture pipeline runs fracture models"
        self._model = model
        self._card = model.card
        self.identity = model.identity

    def __call__(self, payload: AnalyseStudy, study: StudyImages) -> Analysed | Skipped:
        problem = study.problem or study.outside(self._card.intended_use)
        if problem is not None:
            return Skipped(payload.pipeline, problem, self.identity, payload.skipped)
        started = time.perf_counter()
        card = self._card
        prepared = [prepare(i.pixels, i.facts, card.input_size) for i in study.images if i.pixels is not None]
        batch = torch.stack([p.pixels for p in prepared]).to(self._model.device)
        with torch.inference_mode(), self._model.autocast():
            heatmap, sizes = self._model.network(batch)
        detections = decode(heatmap, sizes)
        probability = study_probability(detections)
        state = card.thresholds.state_for(probability)
        if state is None:
            reason = f"invalid model output (probability {probability})"
            return Skipped(payload.pipeline, reason, self.identity, payload.skipped)
        images = tuple(
            ImageFindings(
                sop_instance_uid=image.ref.sop_instance_uid,
                boxes=tuple(
                    Box(corners=geometry.box_to_source((d.x0, d.y0, d.x1, d.y1)), score=round(d.score, 6))
                    for d in found
                    if d.score >= card.thresholds.doubt
                ),
            )
            for image, geometry, found in zip(study.images, prepared, detections, strict=True)
        )
        outcome = FractureOutcome(
            state=state,
            probability=round(probability, 6),
            thresholds=card.thresholds,
            images=images,
            skipped=payload.skipped,
        )
        return Analysed(
            summary=f"{outcome.verdict.label} (probability {probability:.3f})",
            model=self.identity,
            outcome=outcome,
            inputs=[
                {"sop_instance_uid": i.ref.sop_instance_uid, "sha256": i.ref.sha256} for i in study.images
            ],
            timings_ms={"total": round((time.perf_counter() - started) * 1000, 1)},
            device=str(self._model.device),
        )
