"""Held-out figures as ``triage.cards.Metric``: a value, its 95 % interval and the count it rests on.

The one place an interval is put on a figure: model cards, the evaluation report and the evidence
gate all read Metrics made here. Proportions (sensitivity, specificity, PPV, NPV, shares) take the
Wilson interval, which stays inside 0-1 and is honest at small counts; AUROC, calibration error and
box AP take a percentile bootstrap (over exams, or over images for boxes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evaluation.metrics import (
    Box,
    auroc,
    average_precision,
    bootstrap_ci,
    expected_calibration_error,
    sensitivity,
    specificity,
)
from triage.cards import Metric
from triage.proportions import wilson_interval


def _metric(value: float, low: float, high: float, n: int) -> Metric:
    return Metric(value=round(value, 4), ci95_low=round(low, 4), ci95_high=round(high, 4), n=n)


def metric_with_ci(
    name: str,
    labels: Sequence[int],
    scores: Sequence[float],
    threshold: float | None = None,
    resamples: int = 2000,
) -> Metric:
    """AUROC, or sensitivity / specificity at ``threshold``, with its percentile-bootstrap interval."""
    if name == "auroc":
        value, ci = auroc(labels, scores), bootstrap_ci(auroc, labels, scores, resamples=resamples)
    else:
        assert threshold is not None
        fn = sensitivity if name == "sensitivity" else specificity
        value = fn(labels, scores, threshold)
        ci = bootstrap_ci(lambda y, s: fn(y, s, threshold), labels, scores, resamples=resamples)
    return _metric(value, ci[0], ci[1], len(labels))


def auroc_metric(labels: Sequence[int], scores: Sequence[float], resamples: int = 2000) -> Metric | None:
    """AUROC with its interval, or None where it is not defined (positives or negatives missing)."""
    if len(set(labels)) < 2:
        return None
    return metric_with_ci("auroc", labels, scores, resamples=resamples)


def proportion_metric(successes: int, trials: int) -> Metric:
    """A held-out proportion (sensitivity, specificity) with its Wilson 95 % interval."""
    low, high = wilson_interval(successes, trials)
    return _metric(successes / trials if trials else 0.0, low, high, trials)


def proportion_or_none(successes: int, trials: int) -> Metric | None:
    """A proportion, or None when nothing was counted (a PPV with nothing flagged)."""
    return proportion_metric(successes, trials) if trials else None


def calibration_error_metric(labels: Sequence[int], probabilities: Sequence[float]) -> Metric:
    """Expected calibration error (10 equal-width bins) with its bootstrap interval: how far the
    model's output is from the share of positives among exams given that output. Large, and the
    output is a score, not a probability (the service calls it that)."""
    value = expected_calibration_error(labels, probabilities)
    low, high = bootstrap_ci(expected_calibration_error, labels, probabilities, resamples=500)
    return _metric(value, low, high, len(labels))


def map50_metric(
    truths: Sequence[Sequence[Box]],
    detections: Sequence[Sequence[tuple[Box, float]]],
    resamples: int = 200,
    seed: int = 0,
) -> Metric:
    """AP at IoU 0.5 over the images, with a bootstrap interval over images (``n`` = images)."""
    value = average_precision(truths, detections, 0.5)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(truths), len(truths))
        if any(truths[i] for i in pick):
            values.append(average_precision([truths[i] for i in pick], [detections[i] for i in pick], 0.5))
    low, high = np.percentile(values, (2.5, 97.5)) if values else (value, value)
    return _metric(value, float(low), float(high), len(truths))
