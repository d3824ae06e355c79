"""Pure metric functions over binary labels and scores, with bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
