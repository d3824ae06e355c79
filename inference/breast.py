"""Per-view malignancy evidence -> exam probability -> 1-10 score -> single or double reading.

The score is the exam probability's decile on a reference screening population (nine cut-points
in the model card), so about 10 % of that population gets each score. A screen scored at or
below the site's ``single_read_max_score`` goes to one reader; anything else, and anything that
cannot be scored (incomplete screen, implant, failure, NaN or out-of-range output), goes to
double reading with the reason. Score 10 is also flagged HIGH_RISK.
"""

from __future__ import annotations

import bisect
import enum
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from inference.fracture import Box, decode, study_probability
from inference.reading import read_study
from inference.schemas import Analysed, ModelIdentity, Skipped
from triage.imaging import UnreadableImage
from triage.messages import AnalyseStudy

if TYPE_CHECKING:  # model.py needs check_cut_points from here
    from inference.model import LoadedModel


class Route(enum.StrEnum):
    SINGLE_READ = "SINGLE_READ"
    DOUBLE_READ = "DOUBLE_READ"


@dataclass(frozen=True)
class BreastOutcome:
    """The screen's result. ``score`` is None whenever no valid score exists."""

    route: Route
    score: int | None
    probability: float | None
    high_risk: bool = False
    reason: str = ""
    per_breast: dict[str, float] = field(default_factory=dict)


def check_cut_points(cut_points: Sequence[float]) -> tuple[float, ...]:
    """Nine non-decreasing probabilities in [0, 1], or a ValueError saying what is wrong."""
    points = tuple(float(p) for p in cut_points)
    if len(points) != 9 or any(not 0.0 <= p <= 1.0 for p in points) or list(points) != sorted(points):
        raise ValueError(
            f"decile cut-points must be nine non-decreasing probabilities in [0, 1], got {points}"
        )
    return points


def score_for(probability: float, cut_points: Sequence[float]) -> int:
    """1-10: one more than the number of cut-points at or below the probability."""
    return 1 + bisect.bisect_right(list(cut_points), probability)


ViewProbabilities = Sequence[tuple[tuple[str, str], float]]  # ((laterality, view), probability)


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
        return BreastOutcome(Route.DOUBLE_READ, None, None, reason=f"invalid model output {values}")
    probability, per_breast = exam_probability(per_view)
    score = score_for(probability, check_cut_points(cut_points))
    route = Route.SINGLE_READ if score <= single_read_max_score else Route.DOUBLE_READ
    return BreastOutcome(route, score, probability, high_risk=score == 10, per_breast=per_breast)


def not_scored(reason: str) -> BreastOutcome:
    """The conservative outcome: double reading, no score, the reason shown."""
    return BreastOutcome(Route.DOUBLE_READ, None, None, reason=reason)


LESION_MIN_SCORE = 0.1  # lesion marks below this are not worth a reader's glance


class BreastPipeline:
    """A four-view screen -> per-view malignancy probability -> exam score -> reading route."""

    def __init__(self, model: LoadedModel, storage_dir: Path, single_read_max_score: int) -> None:
        self._model = model
        self._storage_dir = storage_dir
        self._single_read_max_score = single_read_max_score
        card = model.card
        self.identity = ModelIdentity(card.name, card.version, card.weights_sha256)

    def __call__(self, payload: AnalyseStudy) -> Analysed | Skipped:
        started = time.perf_counter()
        card = self._model.card
        assert card.decile_cut_points is not None, "the model card validated its cut-points"
        try:
            images = read_study(payload, self._storage_dir, card.input_size)
        except UnreadableImage as error:
            return Skipped(f"{error}; double reading", self.identity, _conservative(str(error)))
        batch = torch.stack([image.prepared.pixels for image in images]).to(self._model.device)
        lesions: list[list[Box]] = [[] for _ in images]
        with torch.inference_mode(), self._model.autocast():
            if card.architecture == "centrepoint-lite0":  # view probability = its most suspicious lesion
                lesions = decode(*self._model.network(batch))
                probabilities = [study_probability([boxes]) for boxes in lesions]
            else:
                probabilities = torch.sigmoid(self._model.network(batch).float()).tolist()
        per_view = [((i.meta.laterality, i.meta.view), p) for i, p in zip(images, probabilities, strict=True)]
        outcome = outcome_for(per_view, card.decile_cut_points, self._single_read_max_score)
        if outcome.score is None:
            return Skipped(f"{outcome.reason}; double reading", self.identity, _conservative(outcome.reason))
        summary = f"score {outcome.score} -> {outcome.route}" + (" HIGH_RISK" if outcome.high_risk else "")
        return Analysed(
            summary=summary,
            model=self.identity,
            outcome={
                "score": outcome.score,
                "route": str(outcome.route),
                "high_risk": outcome.high_risk,
                "probability": round(outcome.probability or 0.0, 6),
                "single_read_max_score": self._single_read_max_score,
                "decile_cut_points": list(card.decile_cut_points),
                "per_breast": {k: round(v, 6) for k, v in outcome.per_breast.items()},
                "per_view": [
                    {
                        "sop_instance_uid": i.ref.sop_instance_uid,
                        "laterality": i.meta.laterality,
                        "view": i.meta.view,
                        "probability": round(p, 6),
                        "lesions": [
                            {
                                "corners": list(i.prepared.box_to_source((b.x0, b.y0, b.x1, b.y1))),
                                "score": round(b.score, 6),
                            }
                            for b in boxes
                            if b.score >= LESION_MIN_SCORE
                        ],
                    }
                    for i, p, boxes in zip(images, probabilities, lesions, strict=True)
                ],
                "skipped": payload.skipped,
            },
            inputs=[{"sop_instance_uid": i.ref.sop_instance_uid, "sha256": i.ref.sha256} for i in images],
            timings_ms={"total": round((time.perf_counter() - started) * 1000, 1)},
            device=str(self._model.device),
        )


def _conservative(reason: str) -> dict[str, object]:
    return {"score": None, "route": str(Route.DOUBLE_READ), "high_risk": False, "reason": reason}
