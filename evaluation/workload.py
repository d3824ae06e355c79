"""Screening workload simulation: what a single-reading threshold on the 1-10 score does to reading
work and to where the cancers go, against double reading of every exam (the Capital Region of
Denmark's comparison: exams scored at or below the threshold get one reader, the rest two)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel


class Workload(BaseModel):
    single_read_max_score: int
    exams: int
    single_read_share: float
    reads_per_1000_exams: float
    double_reading_reads_per_1000_exams: float
    workload_reduction: float
    cancers: int
    cancers_in_single_read_arm: int
    cancers_in_single_read_arm_share: float


def simulate(scores: Sequence[int | None], cancers: Sequence[int], single_read_max_score: int) -> Workload:
    """Route each exam (None = not analysed, which is double read) and count reads and cancers."""
    if len(scores) != len(cancers) or not scores:
        raise ValueError("give one score (or None) and one cancer label per exam")
    single = [s is not None and s <= single_read_max_score for s in scores]
    exams = len(scores)
    reads = sum(1 if one else 2 for one in single)
    total_cancers = int(sum(cancers))
    missed_by_second_reader = int(sum(c for c, one in zip(cancers, single, strict=True) if one))
    return Workload(
        single_read_max_score=single_read_max_score,
        exams=exams,
        single_read_share=sum(single) / exams,
        reads_per_1000_exams=1000 * reads / exams,
        double_reading_reads_per_1000_exams=2000.0,
        workload_reduction=1 - reads / (2 * exams),
        cancers=total_cancers,
        cancers_in_single_read_arm=missed_by_second_reader,
        cancers_in_single_read_arm_share=missed_by_second_reader / total_cancers if total_cancers else 0.0,
    )


def sweep(scores: Sequence[int | None], cancers: Sequence[int]) -> list[Workload]:
    """The simulation at every threshold from 0 (double read everything) to 10 (single read everything)."""
    return [simulate(scores, cancers, threshold) for threshold in range(11)]
