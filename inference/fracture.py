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

from inference.inputs import StudyImages
from inference.model import LoadedModel
from inference.predict import Detection, ImageResult
from inference.transforms import Prepared, prepare
from triage import evidence
from triage.cards import FractureCard
from triage.evidence import Gatekeeper
from triage.messages import AnalyseStudy
from triage.outcomes import Analysed, Box, FractureOutcome, ImageFindings, Skipped


def study_probability(images: Sequence[ImageResult]) -> float:
    """The study's fracture probability: its most suspicious image (0 with none)."""
    return max((image.probability for image in images), default=0.0)


class FracturePipeline:
    """A trauma study's images -> boxes per image -> FRACTURE / DOUBT / NO FRACTURE."""

    def __init__(self, model: LoadedModel, gatekeeper: Gatekeeper | None = None) -> None:
        assert isinstance(model.card, FractureCard), "the fracture pipeline runs fracture models"
        self._model = model
        self._card = model.card
        # Default: the card's evidence at the default bars, no overrides (the worker passes the site's).
        self._gatekeeper = gatekeeper or Gatekeeper()
        self.identity = model.identity

    def __call__(self, payload: AnalyseStudy, study: StudyImages) -> Analysed | Skipped:
        problem = study.problem or study.outside(self._card.intended_use)
        if problem is not None:
            return Skipped(payload.pipeline, problem, self.identity, payload.skipped)
        started = time.perf_counter()
        card = self._card
        prepared = [prepare(i.pixels, i.facts, card.input_size) for i in study.images if i.pixels is not None]
        found = self._model.predict(prepared)
        probability = study_probability(found)
        state = card.thresholds.state_for(probability)
        if state is None:
            reason = f"invalid model output (probability {probability})"
            return Skipped(payload.pipeline, reason, self.identity, payload.skipped)
        images = tuple(
            _findings(image.ref.sop_instance_uid, result, geometry, card)
            for image, geometry, result in zip(study.images, prepared, found, strict=True)
        )
        outcome = FractureOutcome(
            state=state,
            probability=round(probability, 6),
            thresholds=card.thresholds,
            images=images,
            skipped=payload.skipped,
        )
        outcome = evidence.apply(outcome, self._gatekeeper(card))
        return Analysed(
            summary=f"{outcome.verdict.label} (score {probability:.3f})",
            model=self.identity,
            outcome=outcome,
            inputs=[
                {"sop_instance_uid": i.ref.sop_instance_uid, "sha256": i.ref.sha256} for i in study.images
            ],
            timings_ms={"total": round((time.perf_counter() - started) * 1000, 1)},
            device=str(self._model.device),
        )


def _findings(
    sop_instance_uid: str, result: ImageResult, geometry: Prepared, card: FractureCard
) -> ImageFindings:
    """An image's probability and the boxes a reader is shown: none on an image below DOUBT; on a
    detector-only model, the boxes at or above DOUBT; else the head's boxes above ``box_min_score``."""
    if result.probability < card.thresholds.doubt:
        boxes: tuple[Detection, ...] = ()
    elif card.architecture == "centrepoint-lite0":
        boxes = tuple(d for d in result.detections if d.score >= card.thresholds.doubt)
    else:
        boxes = tuple(d for d in result.detections if d.score >= card.box_min_score)[: card.max_boxes]
    return ImageFindings(
        sop_instance_uid=sop_instance_uid,
        probability=round(result.probability, 6),
        boxes=tuple(
            Box(corners=geometry.box_to_source((d.x0, d.y0, d.x1, d.y1)), score=round(d.score, 6))
            for d in boxes
        ),
    )
