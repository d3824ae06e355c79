"""`triage evaluate`: a model on a labelled manifest, every figure with its interval, per subgroup.

Predictions go through the service's own steps (inference/transforms.py, the networks, the decoders
of inference/fracture.py and breast.py), so what is measured is what the service would conclude.
Images are grouped into exams by ``exam_id``: a trauma study is as suspicious as its most
suspicious image, a screen as its worse breast.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation import metrics
from evaluation.evidence import fracture_evidence, single_read_evidence
from evaluation.findings import (
    AtThreshold,
    Boxes,
    CalibrationBin,
    DatasetRef,
    Distribution,
    EvaluationReport,
    FrocPoint,
    ModelRef,
    RocPoint,
    ScoreShare,
    Subgroup,
)
from evaluation.intervals import auroc_metric, calibration_error_metric, map50_metric, proportion_or_none
from evaluation.workload import sweep
from inference.breast import exam_probability, score_for
from inference.model import LoadedModel
from inference.transforms import prepare
from triage.cards import BreastCard, Evidence, FractureCard, ModelCard
from triage.imaging import UnreadableImage
from triage.manifests import Sample
from triage.pipelines import Pipeline

BoxScore = tuple[tuple[float, float, float, float], float]
BATCH = 8


@dataclass(frozen=True)
class Prediction:
    sample: Sample
    probability: float
    boxes: list[BoxScore]  # in source pixels


@dataclass(frozen=True)
class Predictions:
    """Every readable image's prediction, and the images that could not be read, each with why."""

    images: list[Prediction]
    skipped: list[str]


def predict(
    model: LoadedModel, samples: Sequence[Sample], progress: Callable[[int, int], None] | None = None
) -> Predictions:
    """Every image's probability (and boxes, where the model finds them) as the service computes them.

    An image that cannot be read (a hospital archive holds damaged files) is skipped with its reason,
    never stops the run; the report counts them.
    """
    card = model.card
    found: list[Prediction] = []
    skipped: list[str] = []
    for start in range(0, len(samples), BATCH):
        chunk, prepared = [], []
        for sample in samples[start : start + BATCH]:
            try:
                pixels = sample.load()
            except (OSError, ValueError, UnreadableImage) as error:
                skipped.append(f"{sample.path}: {type(error).__name__}: {error}")
                continue
            chunk.append(sample)
            prepared.append(prepare(pixels, sample.meta, card.input_size))
        results = model.predict(prepared) if prepared else []
        for sample, geometry, result in zip(chunk, prepared, results, strict=True):
            boxes = [(geometry.box_to_source((d.x0, d.y0, d.x1, d.y1)), d.score) for d in result.detections]
            found.append(Prediction(sample, result.probability, boxes))
        if progress is not None:
            progress(min(start + BATCH, len(samples)), len(samples))
    return Predictions(found, skipped)


@dataclass(frozen=True)
class Exam:
    exam: str
    label: int
    probability: float
    subgroups: dict[str, str]


def exams(predictions: Sequence[Prediction], pipeline: Pipeline) -> list[Exam]:
    """Images grouped by exam: trauma as its worst image, a screen as its worse breast."""
    grouped: dict[str, list[Prediction]] = {}
    for prediction in predictions:
        grouped.setdefault(prediction.sample.exam or prediction.sample.group, []).append(prediction)
    found = []
    for exam, members in sorted(grouped.items()):
        if pipeline == Pipeline.BREAST:
            views = [((p.sample.meta.laterality, p.sample.meta.view), p.probability) for p in members]
            probability = exam_probability(views)[0]
        else:
            probability = max(p.probability for p in members)
        found.append(
            Exam(exam, max(p.sample.label for p in members), probability, dict(members[0].sample.subgroups))
        )
    return found


def at_threshold(labels: Sequence[int], scores: Sequence[float], threshold: float) -> AtThreshold:
    """Sensitivity, specificity, PPV and NPV of ``score >= threshold``, each with a Wilson interval."""
    y, s = np.asarray(labels), np.asarray(scores)
    flagged = s >= threshold
    return AtThreshold(
        threshold=threshold,
        sensitivity=proportion_or_none(int((flagged & (y == 1)).sum()), int((y == 1).sum())),
        specificity=proportion_or_none(int((~flagged & (y == 0)).sum()), int((y == 0).sum())),
        ppv=proportion_or_none(int((flagged & (y == 1)).sum()), int(flagged.sum())),
        npv=proportion_or_none(int((~flagged & (y == 0)).sum()), int((~flagged).sum())),
    )


def operating_points(card: ModelCard, single_read_max_score: int) -> dict[str, float]:
    """The thresholds on the exam probability that the card (and routing) put in force."""
    if isinstance(card, FractureCard):
        return {"doubt": card.doubt_threshold, "fracture": card.fracture_threshold}
    # score = 1 + (cut-points <= p), so score > t exactly when p >= the t-th cut-point.
    if single_read_max_score >= 10:
        return {"double_reading": 1.1}  # nothing is double read
    cut = card.decile_cut_points[single_read_max_score - 1] if single_read_max_score >= 1 else 0.0
    return {"double_reading": float(cut)}


def figures(
    card: ModelCard,
    predictions: Predictions,
    dataset: Path,
    single_read_max_score: int = 5,
    resamples: int = 1000,
) -> EvaluationReport:
    """Every figure of the evaluation."""
    images = predictions.images
    found = exams(images, card.pipeline)
    labels, scores = [e.label for e in found], [e.probability for e in found]
    points = {
        name: at_threshold(labels, scores, t)
        for name, t in operating_points(card, single_read_max_score).items()
    }
    screening: dict[str, Any] = _screening(card, labels, scores) if isinstance(card, BreastCard) else {}
    return EvaluationReport(
        model=ModelRef(
            name=card.name, version=card.version, pipeline=card.pipeline, weights_sha256=card.weights_sha256
        ),
        dataset=DatasetRef(
            manifest=str(dataset),
            sha256=hashlib.sha256(dataset.read_bytes()).hexdigest(),
            images=len(images),
            exams=len(found),
            positive_exams=int(sum(labels)),
            skipped_images=len(predictions.skipped),
            skipped=predictions.skipped,
        ),
        image_auroc=auroc_metric(
            [p.sample.label for p in images], [p.probability for p in images], resamples
        ),
        exam_auroc=auroc_metric(labels, scores, resamples),
        brier=metrics.brier(labels, scores),
        calibration_error=calibration_error_metric(labels, scores) if len(set(labels)) == 2 else None,
        calibration=[CalibrationBin(**row) for row in metrics.calibration_bins(labels, scores)],
        roc=roc_points(labels, scores),
        distribution=distribution(labels, scores),
        operating_points=points,
        **screening,
        boxes=_boxes(images),
        evidence=_evidence(card, points, labels, scores, dataset),
        subgroups=subgroups(found, operating_points(card, single_read_max_score), resamples),
    )


def _screening(card: BreastCard, labels: Sequence[int], scores: Sequence[float]) -> dict[str, Any]:
    """Share and positive rate per 1-10 score, and the workload at every single-reading threshold."""
    exam_scores = [score_for(p, card.decile_cut_points) for p in scores]
    per_score = {}
    for score in range(1, 11):
        members = [label for label, s in zip(labels, exam_scores, strict=True) if s == score]
        per_score[score] = ScoreShare(
            share=len(members) / len(labels),
            n=len(members),
            positive_rate=proportion_or_none(sum(members), len(members)),
        )
    return {"scores": per_score, "workload": sweep(exam_scores, labels)}


def _evidence(
    card: ModelCard,
    points: dict[str, AtThreshold],
    labels: Sequence[int],
    scores: Sequence[float],
    dataset: Path,
) -> Evidence:
    """The evidence gate's figures for this model on this manifest, as a card would carry them: the
    rule-out at the card's DOUBT, or single reading at thresholds 1-9. Boxes are not carried: a
    card's box evidence comes from its own test part."""
    source = f"triage evaluate on {dataset.name}: {len(labels)} exams"
    if isinstance(card, FractureCard):
        sensitivity = points["doubt"].sensitivity
        if sensitivity is None:
            return Evidence()
        return fracture_evidence({"sensitivity_at_doubt": sensitivity}, card.doubt_threshold, source)
    exam_scores = [score_for(p, card.decile_cut_points) for p in scores]
    return Evidence(single_read=single_read_evidence(exam_scores, list(labels), source))


def _boxes(images: Sequence[Prediction]) -> Boxes | None:
    """FROC and AP@0.5 against the true boxes, when the manifest has boxes and the model draws them."""
    truths = [list(p.sample.boxes) for p in images]
    if not any(truths) or not any(p.boxes for p in images):
        return None
    detections = [p.boxes for p in images]
    return Boxes(
        true_boxes=sum(len(t) for t in truths),
        map50=map50_metric(truths, detections),
        froc=[FrocPoint(**point) for point in metrics.froc(truths, detections)],
    )


def subgroups(
    found: Sequence[Exam], points: dict[str, float], resamples: int
) -> dict[str, dict[str, Subgroup]]:
    """The same figures for every subgroup column the manifest gives (site, device, age band)."""
    table: dict[str, dict[str, Subgroup]] = {}
    keys = sorted({key for exam in found for key in exam.subgroups})
    for key in keys:
        values = sorted({exam.subgroups.get(key, "") for exam in found})
        table[key] = {}
        for value in values:
            members = [e for e in found if e.subgroups.get(key, "") == value]
            labels, scores = [e.label for e in members], [e.probability for e in members]
            table[key][value or "(not given)"] = Subgroup(
                exams=len(members),
                positive_exams=int(sum(labels)),
                exam_auroc=auroc_metric(labels, scores, resamples),
                operating_points={name: at_threshold(labels, scores, t) for name, t in points.items()},
            )
    return table


def roc_points(labels: Sequence[int], scores: Sequence[float]) -> list[RocPoint]:
    """The ROC curve: (1 - specificity, sensitivity) at every distinct score."""
    y, s = np.asarray(labels), np.asarray(scores)
    positives, negatives = max(int((y == 1).sum()), 1), max(int((y == 0).sum()), 1)
    curve = [RocPoint(false_positive_rate=0.0, sensitivity=0.0, threshold=math.inf)]
    for threshold in sorted(set(s.tolist()), reverse=True):
        flagged = s >= threshold
        curve.append(
            RocPoint(
                false_positive_rate=float((flagged & (y == 0)).sum() / negatives),
                sensitivity=float((flagged & (y == 1)).sum() / positives),
                threshold=float(threshold),
            )
        )
    return curve


def distribution(labels: Sequence[int], scores: Sequence[float], bins: int = 20) -> Distribution:
    """How many exams of each label fall in each of ``bins`` equal probability bins (the histogram)."""
    edges = np.linspace(0, 1, bins + 1)
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    return Distribution(
        positive=np.histogram(s[y == 1], edges)[0].tolist(),
        negative=np.histogram(s[y == 0], edges)[0].tolist(),
    )
