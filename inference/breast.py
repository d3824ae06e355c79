"""Per-view malignancy evidence -> exam probability -> 1-10 score -> single or double reading.

The score is the exam probability's decile on a reference screening population (nine cut-points
in the model card), so about 10 % of that population gets each score. A screen scored at or
below the site's ``single_read_max_score`` goes to one reader; anything else, and anything that
cannot be scored (incomplete screen, implant, failure, NaN or out-of-range output), goes to
double reading with the reason. Score 10 is also flagged HIGH_RISK.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Sequence

from inference.inputs import StudyImages
from inference.model import LoadedModel
from inference.predict import Detection
from inference.transforms import Prepared, prepare
from triage import evidence
from triage.cards import BreastCard
from triage.evidence import Gatekeeper
from triage.messages import AnalyseStudy
from triage.outcomes import Analysed, Box, BreastOutcome, Route, Skipped, ViewFindings

ViewProbabilities = Sequence[tuple[tuple[str, str], float]]  # ((laterality, view), probability)
LESION_MIN_SCORE = 0.1  # lesion marks below this are not worth a reader's glance


def score_for(probability: float, cut_points: Sequence[float]) -> int:
    """1-10: one more than the number of cut-points at or below the probability."""
    return 1 + bisect.bisect_right(list(cut_points), probability)


def exam_probability(per_view: ViewProbabilities) -> tuple[float, dict[str, float]]:
    """Combine views: a breast is as suspicious as its most suspicious view, the exam as its worse breast.

    Call with valid probabilities only (``outcome_for`` checks): ``max`` would silently drop a NaN.
    """
    per_breast: dict[str, float] = {}
    for (laterality, _view), probability in per_view:
        per_breast[laterality] = max(per_breast.get(laterality, 0.0), probability)
    return max(per_breast.values(), default=float("nan")), per_breast


def outcome_for(
    per_view: ViewProbabilities, cut_points: Sequence[float], single_read_max_score: int
) -> BreastOutcome:
    """Score and route a complete four-view screen from every view's probability (repeats allowed)."""
    values = [probability for _, probability in per_view]
    if not values or any(not math.isfinite(p) or not 0.0 <= p <= 1.0 for p in values):
        return BreastOutcome(reason=f"invalid model output {values}")
    probability, per_breast = exam_probability(per_view)
    score = score_for(probability, cut_points)
    return BreastOutcome(
        score=score,
        route=Route.SINGLE_READ if score <= single_read_max_score else Route.DOUBLE_READ,
        high_risk=score == 10,
        probability=round(probability, 6),
        single_read_max_score=single_read_max_score,
        decile_cut_points=tuple(cut_points),
        per_breast={k: round(v, 6) for k, v in per_breast.items()},
    )


class BreastPipeline:
    """A four-view screen -> per-view malignancy probability -> exam score -> reading route."""

    def __init__(
        self,
        model: LoadedModel,
        single_read_max_score: int | Callable[[], int],
        gatekeeper: Gatekeeper | None = None,
    ) -> None:
        """``single_read_max_score``: the threshold, or how to read the one in force for each screen
        (the worker reads the database, where two admins may have changed it)."""
        assert isinstance(model.card, BreastCard), "the breast pipeline runs screening models"
        self._model = model
        self._card = model.card
        threshold = single_read_max_score
        self._threshold = threshold if callable(threshold) else lambda: threshold
        # Default: the card's evidence at the default bars, no overrides (the worker passes the site's).
        self._gatekeeper = gatekeeper or Gatekeeper()
        self.identity = model.identity

    def __call__(self, payload: AnalyseStudy, study: StudyImages) -> Analysed | Skipped:
        problem = study.problem or study.outside(self._card.intended_use)
        if problem is not None:
            return Skipped(payload.pipeline, f"{problem}; double reading", self.identity, payload.skipped)
        started = time.perf_counter()
        images = [i for i in study.images if i.pixels is not None]
        prepared = [prepare(i.pixels, i.facts, self._card.input_size) for i in images if i.pixels is not None]
        found = self._model.predict(prepared)
        probabilities, lesions = [r.probability for r in found], [r.detections for r in found]
        per_view = [
            ((i.facts.laterality, i.facts.view), p) for i, p in zip(images, probabilities, strict=True)
        ]
        single_read_max_score = self._threshold()
        outcome = outcome_for(per_view, self._card.decile_cut_points, single_read_max_score)
        if outcome.score is None:
            reason = f"{outcome.reason}; double reading"
            return Skipped(payload.pipeline, reason, self.identity, payload.skipped)
        outcome = outcome.model_copy(
            update={
                "per_view": tuple(
                    _view(
                        image.ref.sop_instance_uid,
                        image.facts.laterality,
                        image.facts.view,
                        p,
                        found,
                        geometry,
                    )
                    for image, p, found, geometry in zip(
                        images, probabilities, lesions, prepared, strict=True
                    )
                ),
                "skipped": payload.skipped,
            }
        )
        outcome = evidence.apply(outcome, self._gatekeeper(self._card, single_read_max_score))
        summary = f"score {outcome.score} -> {outcome.route}" + (" HIGH_RISK" if outcome.high_risk else "")
        return Analysed(
            summary=summary,
            model=self.identity,
            outcome=outcome,
            inputs=[{"sop_instance_uid": i.ref.sop_instance_uid, "sha256": i.ref.sha256} for i in images],
            timings_ms={"total": round((time.perf_counter() - started) * 1000, 1)},
            device=str(self._model.device),
        )


def _view(
    sop_instance_uid: str,
    laterality: str,
    view: str,
    probability: float,
    found: Sequence[Detection],
    geometry: Prepared,
) -> ViewFindings:
    return ViewFindings(
        sop_instance_uid=sop_instance_uid,
        laterality=laterality,
        view=view,
        probability=round(probability, 6),
        lesions=tuple(
            Box(corners=geometry.box_to_source((d.x0, d.y0, d.x1, d.y1)), score=round(d.score, 6))
            for d in found
            if d.score >= LESION_MIN_SCORE
        ),
    )
