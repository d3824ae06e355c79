"""Thresholds for a target sensitivity or specificity, and the decile cut-points of a score."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from triage.proportions import wilson_interval


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


def threshold_for_sensitivity_bound(labels: Sequence[int], scores: Sequence[float], target: float) -> float:
    """The highest threshold whose sensitivity's 95 % Wilson lower bound reaches ``target``.

    Choosing on the lower bound rather than the point estimate keeps the promise at the size of the
    calibration set: with 50 positives, a measured 0.90 is only known to be above 0.79.

    Raises:
        ValueError: no threshold reaches it (too few positives for the target, or a weak model).
    """
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    positives = s[y == 1]
    if len(positives) == 0:
        raise ValueError("a sensitivity target needs positives")
    best = 0.0
    for threshold in sorted(set(positives.tolist()), reverse=True):
        low, _ = wilson_interval(int((positives >= threshold).sum()), len(positives))
        best = max(best, low)
        if low >= target:
            return float(threshold)
    raise ValueError(
        f"no threshold gives a sensitivity whose 95 % lower bound reaches {target}: the best is {best:.3f} "
        f"with {len(positives)} positives; calibrate on more positive cases"
    )


def threshold_for_specificity_bound(labels: Sequence[int], scores: Sequence[float], target: float) -> float:
    """The lowest threshold whose specificity's 95 % Wilson lower bound reaches ``target``.

    Raises:
        ValueError: no threshold reaches it.
    """
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    negatives = s[y == 0]
    if len(negatives) == 0:
        raise ValueError("a specificity target needs negatives")
    best = 0.0
    for value in sorted(set(negatives.tolist())):
        threshold = float(np.nextafter(value, np.inf))
        low, _ = wilson_interval(int((negatives < threshold).sum()), len(negatives))
        best = max(best, low)
        if low >= target:
            return threshold
    raise ValueError(
        f"no threshold gives a specificity whose 95 % lower bound reaches {target}: the best is {best:.3f} "
        f"with {len(negatives)} negatives"
    )
