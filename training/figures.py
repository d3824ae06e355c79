"""Held-out figures for a model card, each with its 95 % interval, from scored held-out images.

The same function measures the shipped model on its test part and the recipe on the pooled
out-of-fold predictions of a cross-validation (each fold at the operating points chosen inside it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from evaluation.intervals import calibration_error_metric, map50_metric, metric_with_ci, proportion_metric
from inference.breast import exam_probability
from triage.cards import Metric

REGIONS = ("hand", "leg", "hip", "shoulder")  # FracAtlas body parts; an image may show several


@dataclass(frozen=True)
class Scored:
    """One held-out image as a model scored it; JSON-ready, so that folds can be pooled later."""

    image: str
    label: int
    group: str
    exam: str
    probability: float
    laterality: str = ""
    view: str = ""
    boxes: list[list[float]] = field(default_factory=list)  # the true boxes, source pixels
    detections: list[list[float]] = field(default_factory=list)  # x0, y0, x1, y1, score; source pixels
    subgroups: dict[str, str] = field(default_factory=dict)
    doubt: float | None = None  # the operating points in force for this image (its fold's)
    fracture: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _at_points(scored: Sequence[Scored], suffix: str = "") -> dict[str, Metric]:
    found = {}
    for point in ("doubt", "fracture"):
        flagged = [s.probability >= getattr(s, point) for s in scored]
        positives = [f for f, s in zip(flagged, scored, strict=True) if s.label == 1]
        negatives = [not f for f, s in zip(flagged, scored, strict=True) if s.label == 0]
        if positives:
            found[f"sensitivity_at_{point}{suffix}"] = proportion_metric(sum(positives), len(positives))
        if negatives:
            found[f"specificity_at_{point}{suffix}"] = proportion_metric(sum(negatives), len(negatives))
    return found


def _auroc(scored: Sequence[Scored], name: str) -> dict[str, Metric]:
    labels = [s.label for s in scored]
    if len(set(labels)) < 2:
        return {}
    return {name: metric_with_ci("auroc", labels, [s.probability for s in scored])}


def box_map(scored: Sequence[Scored]) -> Metric:
    """AP at IoU 0.5 over the images, with a bootstrap interval over images."""
    truths = [[(b[0], b[1], b[2], b[3]) for b in s.boxes] for s in scored]
    detections = [[((d[0], d[1], d[2], d[3]), d[4]) for d in s.detections] for s in scored]
    return map50_metric(truths, detections)


def fracture_figures(scored: Sequence[Scored]) -> dict[str, Metric]:
    """AUROC, sensitivity and specificity at DOUBT and FRACTURE, box AP@0.5, calibration error; the
    same without orthopaedic hardware (nearly a label by itself in FracAtlas), and AUROC per body
    region."""
    found = {**_auroc(scored, "auroc"), **_at_points(scored)}
    if len({s.label for s in scored}) == 2:
        found["calibration_error"] = calibration_error_metric(
            [s.label for s in scored], [s.probability for s in scored]
        )
    if any(s.boxes for s in scored):
        found["map50"] = box_map(scored)
    plain = [s for s in scored if s.subgroups.get("hardware") != "yes"]
    if len(plain) < len(scored):
        found.update(_auroc(plain, "auroc_without_hardware"))
        found.update(_at_points(plain, "_without_hardware"))
    for region in REGIONS:
        members = [s for s in scored if region in s.subgroups.get("body_part", "").split("+")]
        found.update(_auroc(members, f"auroc_{region}"))
        found.update({k: v for k, v in _at_points(members, f"_{region}").items() if "at_doubt" in k})
    return found


def exams(scored: Sequence[Scored]) -> tuple[list[int], list[float]]:
    """Screening exams' labels and probabilities: the worse breast, each breast its worst view."""
    grouped: dict[str, list[Scored]] = {}
    for image in scored:
        grouped.setdefault(image.exam or image.group, []).append(image)
    labels, probabilities = [], []
    for members in grouped.values():
        labels.append(max(m.label for m in members))
        probabilities.append(exam_probability([((m.laterality, m.view), m.probability) for m in members])[0])
    return labels, probabilities


def breast_figures(scored: Sequence[Scored]) -> dict[str, Metric]:
    labels, probabilities = exams(scored)
    found = {}
    if len(set(labels)) == 2:
        found["exam_auroc"] = metric_with_ci("auroc", labels, probabilities)
        found["exam_calibration_error"] = calibration_error_metric(labels, probabilities)
    found.update(_auroc(scored, "view_auroc"))
    return found
