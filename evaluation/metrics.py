"""Pure metric functions: over binary labels and scores (AUROC, sensitivity, PPV, calibration, DeLong),
over boxes (FROC, average precision), with bootstrap and Wilson confidence intervals
(``evaluation.intervals`` puts them together as a card's ``Metric``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np

Labels = Sequence[int] | np.ndarray
Scores = Sequence[float] | np.ndarray


def _arrays(labels: Labels, scores: Scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError("labels and scores must be 1-D and of the same length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return y, s


def auroc(labels: Labels, scores: Scores) -> float:
    """Area under the ROC curve: the probability a positive outranks a negative (ties count half)."""
    y, s = _arrays(labels, scores)
    positives, negatives = s[y == 1], s[y == 0]
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("AUROC needs at least one positive and one negative")
    order = np.argsort(np.concatenate([positives, negatives]), kind="mergesort")
    ranks = np.empty(len(order), dtype=np.float64)
    combined = np.concatenate([positives, negatives])[order]
    ranks[order] = _average_ranks(combined)
    rank_sum = ranks[: len(positives)].sum()
    return float((rank_sum - len(positives) * (len(positives) + 1) / 2) / (len(positives) * len(negatives)))


def _average_ranks(sorted_values: np.ndarray) -> np.ndarray:
    ranks = np.arange(1, len(sorted_values) + 1, dtype=np.float64)
    start = 0
    for end in range(1, len(sorted_values) + 1):
        if end == len(sorted_values) or sorted_values[end] != sorted_values[start]:
            ranks[start:end] = (start + 1 + end) / 2
            start = end
    return ranks


def sensitivity(labels: Labels, scores: Scores, threshold: float) -> float:
    """Share of positives scored at or above ``threshold``."""
    y, s = _arrays(labels, scores)
    return float((s[y == 1] >= threshold).mean())


def specificity(labels: Labels, scores: Scores, threshold: float) -> float:
    """Share of negatives scored below ``threshold``."""
    y, s = _arrays(labels, scores)
    return float((s[y == 0] < threshold).mean())


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    labels: Labels,
    scores: Scores,
    *,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(labels, scores)``; resamples lacking a class are redrawn."""
    y, s = _arrays(labels, scores)
    rng = np.random.default_rng(seed)
    values: list[float] = []
    while len(values) < resamples:
        index = rng.integers(0, len(y), len(y))
        if 0 < y[index].sum() < len(index):
            values.append(metric(y[index], s[index]))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, (tail, 100 - tail))
    return float(low), float(high)


def ppv(labels: Labels, scores: Scores, threshold: float) -> float:
    """Share of cases scored at or above ``threshold`` that are positive (NaN when none are)."""
    y, s = _arrays(labels, scores)
    flagged = s >= threshold
    return float(y[flagged].mean()) if flagged.any() else float("nan")


def npv(labels: Labels, scores: Scores, threshold: float) -> float:
    """Share of cases scored below ``threshold`` that are negative (NaN when none are)."""
    y, s = _arrays(labels, scores)
    cleared = s < threshold
    return float((1 - y[cleared]).mean()) if cleared.any() else float("nan")


def brier(labels: Labels, scores: Scores) -> float:
    """Mean squared error of the probabilities."""
    y, s = _arrays(labels, scores)
    return float(np.mean((s - y) ** 2))


def calibration_bins(labels: Labels, scores: Scores, bins: int = 10) -> list[dict[str, float]]:
    """Reliability table: per equal-width probability bin, its count, mean probability and observed rate."""
    y, s = _arrays(labels, scores)
    index = np.clip((s * bins).astype(int), 0, bins - 1)
    table = []
    for b in range(bins):
        members = index == b
        if members.any():
            table.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "n": int(members.sum()),
                    "mean_probability": float(s[members].mean()),
                    "observed_rate": float(y[members].mean()),
                }
            )
    return table


def expected_calibration_error(labels: Labels, scores: Scores, bins: int = 10) -> float:
    """Count-weighted mean gap between mean probability and observed rate over the bins."""
    table = calibration_bins(labels, scores, bins)
    total = sum(row["n"] for row in table)
    return float(sum(row["n"] * abs(row["mean_probability"] - row["observed_rate"]) for row in table) / total)


Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _matched_detections(
    truths: Sequence[Sequence[Box]], detections: Sequence[Sequence[tuple[Box, float]]], min_iou: float
) -> tuple[list[tuple[float, bool]], int]:
    """Every detection with whether it finds a not yet found true box (greedy by score), and the count
    of true boxes. Detections are matched per image, most confident first (PASCAL VOC)."""
    matched: list[tuple[float, bool]] = []
    for image_truths, image_detections in zip(truths, detections, strict=True):
        found = [False] * len(image_truths)
        for box, score in sorted(image_detections, key=lambda d: -d[1]):
            best, best_iou = -1, min_iou
            for index, truth in enumerate(image_truths):
                overlap = iou(box, truth)
                if not found[index] and overlap >= best_iou:
                    best, best_iou = index, overlap
            if best >= 0:
                found[best] = True
            matched.append((score, best >= 0))
    return matched, sum(len(t) for t in truths)


def average_precision(
    truths: Sequence[Sequence[Box]], detections: Sequence[Sequence[tuple[Box, float]]], min_iou: float = 0.5
) -> float:
    """AP at an IoU threshold (all-point interpolation, as PASCAL VOC 2010+ and COCO per threshold)."""
    matched, total = _matched_detections(truths, detections, min_iou)
    if total == 0:
        raise ValueError("average precision needs at least one true box")
    matched.sort(key=lambda m: -m[0])
    hits = np.cumsum([hit for _, hit in matched])
    precision = hits / np.arange(1, len(matched) + 1)
    recall = hits / total
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    previous, area = 0.0, 0.0
    for r, p in zip(recall, precision, strict=True):
        area += (r - previous) * p
        previous = r
    return float(area)


def froc(
    truths: Sequence[Sequence[Box]],
    detections: Sequence[Sequence[tuple[Box, float]]],
    false_positives_per_image: Sequence[float] = (0.125, 0.25, 0.5, 1, 2, 4, 8),
    min_iou: float = 0.5,
) -> list[dict[str, float]]:
    """Lesion sensitivity at given mean false positives per image (the FROC curve's usual points)."""
    matched, total = _matched_detections(truths, detections, min_iou)
    if total == 0:
        raise ValueError("FROC needs at least one true box")
    matched.sort(key=lambda m: -m[0])
    images = len(truths)
    points = []
    for rate in false_positives_per_image:
        allowed, hits, false = rate * images, 0, 0
        for _, hit in matched:
            if not hit and false + 1 > allowed:
                break
            hits, false = hits + hit, false + (not hit)
        points.append({"false_positives_per_image": float(rate), "sensitivity": hits / total})
    return points


def _structural_components(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong placement values: per positive, the share of negatives it outranks (ties half), and back."""
    greater = (positives[:, None] > negatives[None, :]).astype(np.float64)
    ties = (positives[:, None] == negatives[None, :]).astype(np.float64) * 0.5
    psi = greater + ties
    return psi.mean(axis=1), psi.mean(axis=0)


def delong_test(labels: Labels, scores_a: Scores, scores_b: Scores) -> dict[str, float]:
    """DeLong, DeLong and Clarke-Pearson (1988): two correlated AUROCs on the same cases.

    Returns both AUROCs, their difference, its standard error and 95 % interval, and the two-sided p.
    """
    y, a = _arrays(labels, scores_a)
    _, b = _arrays(labels, scores_b)
    if len(b) != len(a):
        raise ValueError("both models must score the same cases")
    components = [_structural_components(s[y == 1], s[y == 0]) for s in (a, b)]
    aucs = [float(v10.mean()) for v10, _ in components]
    s10 = np.cov(np.vstack([v10 for v10, _ in components]))
    s01 = np.cov(np.vstack([v01 for _, v01 in components]))
    m, n = int((y == 1).sum()), int((y == 0).sum())
    covariance = s10 / m + s01 / n
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    difference = aucs[0] - aucs[1]
    se = math.sqrt(max(variance, 0.0))
    p = 1.0 if se == 0 else 2 * (1 - NormalDist().cdf(abs(difference) / se))
    return {
        "auroc_a": aucs[0],
        "auroc_b": aucs[1],
        "difference": difference,
        "standard_error": se,
        "ci95_low": difference - 1.959964 * se,
        "ci95_high": difference + 1.959964 * se,
        "p_value": float(p),
    }
