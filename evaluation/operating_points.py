"""Thresholds for a target sensitivity or specificity, and the decile cut-points of a score."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def threshold_for_sensitivity(labels: Sequence[int], scores: Sequence[float], target: float) -> float:
    """The highest threshold whose sensitivity (score >= threshold) is at least ``target``."""
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    positives = np.sort(s[y == 1])[::-1]
    if len(positives) == 0:
        raise ValueError("a sensitivity target needs positives")
    needed = int(np.ceil(target * len(positives)))
    return float(positives[max(needed, 1) - 1])


def threshold_for_specificity(labels: Sequence[int], scores: Sequence[float], target: float) -> float:
    """The lowest threshold whose specificity (score < threshold) is at least ``target``."""
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    negatives = np.sort(s[y == 0])
    if len(negatives) == 0:
        raise ValueError("a specificity target needs negatives")
    needed = int(np.ceil(target * len(negatives)))
    if needed >= len(negatives):
        return float(np.nextafter(negatives[-1], np.inf))
    return float(np.nextafter(negatives[needed - 1], np.inf)) if needed else float(negatives[0])


def decile_cut_points(reference_scores: Sequence[float]) -> list[float]:
    """Nine cut-points splitting a reference population into ten equal shares."""
    values = np.asarray(reference_scores, dtype=np.float64)
    if len(values) < 10:
        raise ValueError("decile cut-points need at least ten reference exams")
    return [float(v) for v in np.quantile(values, np.linspace(0.1, 0.9, 9))]
