"""The Wilson score interval of a proportion, shared by evaluation (model cards, reports) and the
live evidence the running service keeps (``triage.records.live_evidence``)."""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion: exact enough at small n, never outside 0-1."""
    if trials == 0:
        return (0.0, 1.0)
    z = float(NormalDist().inv_cdf(1 - (1 - level) / 2))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))
