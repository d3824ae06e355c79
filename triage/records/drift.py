"""The score drift: the distribution of the exam probability per scanner (manufacturer and model from
the headers) against the model's reference deciles, as a population stability index (PSI), so a new
detector or a software update at a modality shows before outcomes do.

The reference is the nine deciles of the model's exam probability on held-out exams (its card's;
``triage calibrate`` sets them from the site's own exams), so each of the ten bins holds a tenth of
the reference. PSI = sum over bins of (live share - 0.1) * ln(live share / 0.1), an empty bin
counted as 0.0001. By the usual reading, below 0.1 is stable, 0.1-0.25 a moderate shift and above
0.25 a shift to act on (``configs/prometheus/triage-alerts.yml`` alerts above 0.25). A reference
measured on an enriched research set (as the bundled fracture model's) differs from a site's case
mix by itself: calibrate on the site's exams before reading the index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from triage.pipelines import Pipeline
from triage.records.status_tables import ModelReference
from triage.records.tables import Result

EMPTY_SHARE = 1e-4


@dataclass(frozen=True)
class ScannerDrift:
    pipeline: Pipeline
    model: str
    scanner: str  # "" when the headers name none
    studies: int
    counts: tuple[int, ...]  # per reference decile bin, lowest first
    psi: float | None  # None below the minimum number of studies


def psi(counts: Sequence[int]) -> float:
    """The population stability index of counts in ten bins against a tenth in each."""
    total = sum(counts)
    if total == 0:
        raise ValueError("no studies to compare")
    expected = 1 / len(counts)
    return sum(
        (share - expected) * math.log(share / expected)
        for share in (max(count / total, EMPTY_SHARE) for count in counts)
    )


def record_reference(
    session: Session,
    pipeline: Pipeline,
    model_name: str,
    model_version: str,
    deciles: Sequence[float],
    now: datetime,
) -> None:
    """Keep a model's reference deciles the first time a worker puts it into service."""
    known = session.scalar(
        select(ModelReference.id).where(
            ModelReference.model_name == model_name, ModelReference.model_version == model_version
        )
    )
    if known is None:
        session.add(
            ModelReference(
                model_name=model_name,
                model_version=model_version,
                pipeline=pipeline,
                deciles=[float(d) for d in deciles],
                first_loaded_at=now,
            )
        )


def drift(
    session: Session, pipeline: Pipeline, now: datetime, window_days: float, min_studies: int
) -> list[ScannerDrift]:
    """Per scanner, the analysed studies of the model in force within the window, binned by its
    reference deciles, and their PSI; empty when the model has no reference."""
    latest = session.execute(
        select(Result.model_name, Result.model_version)
        .where(Result.pipeline == pipeline, Result.analysed.is_(True))
        .order_by(Result.id.desc())
        .limit(1)
    ).first()
    if latest is None:
        return []
    deciles = session.scalar(
        select(ModelReference.deciles).where(
            ModelReference.model_name == latest.model_name,
            ModelReference.model_version == latest.model_version,
        )
    )
    if not deciles:
        return []
    below = [func.sum(case((Result.probability < cut, 1), else_=0)) for cut in deciles]
    rows = session.execute(
        select(Result.scanner, func.count(), *below)
        .where(
            Result.pipeline == pipeline,
            Result.created_at >= now - timedelta(days=window_days),
            Result.model_name == latest.model_name,
            Result.model_version == latest.model_version,
            Result.probability.is_not(None),
        )
        .group_by(Result.scanner)
        .order_by(Result.scanner)
    ).all()
    found = []
    for row in rows:
        scanner, studies, cumulative = str(row[0]), int(row[1]), [int(c or 0) for c in row[2:]]
        edges = [0, *cumulative, studies]
        counts = tuple(edges[k + 1] - edges[k] for k in range(len(edges) - 1))
        model = f"{latest.model_name} {latest.model_version}"
        found.append(
            ScannerDrift(
                pipeline, model, scanner, studies, counts, psi(counts) if studies >= min_studies else None
            )
        )
    return found
