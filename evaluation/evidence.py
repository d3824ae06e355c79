"""The evidence a card carries for the evidence gate (``triage.evidence``), from figures measured on
labelled exams the model never trained on and whose operating points were chosen on other exams."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evaluation.intervals import proportion_metric
from evaluation.workload import simulate
from triage.cards import BoxEvidence, Evidence, Metric, RuleOutEvidence, SingleReadEvidence


def fracture_evidence(metrics: Mapping[str, Metric], doubt_threshold: float, source: str) -> Evidence:
    """The rule-out (sensitivity at DOUBT) and, where measured, the boxes (mAP@50) evidence."""
    sensitivity = metrics.get("sensitivity_at_doubt")
    rule_out = (
        RuleOutEvidence(sensitivity_at_doubt=sensitivity, doubt_threshold=doubt_threshold, source=source)
        if sensitivity is not None
        else None
    )
    map50 = metrics.get("map50")
    return Evidence(rule_out=rule_out, boxes=BoxEvidence(map50=map50, source=source) if map50 else None)


def single_read_evidence(
    scores: Sequence[int | None], cancers: Sequence[int], source: str
) -> tuple[SingleReadEvidence, ...]:
    """At every single-reading threshold 1-9: the share of cancers in the single-read arm (Wilson
    interval, ``n`` = cancers) and the share of screens single-read (``n`` = screens)."""
    found = []
    for threshold in range(1, 10):
        workload = simulate(scores, cancers, threshold)
        single = round(workload.single_read_share * workload.exams)
        found.append(
            SingleReadEvidence(
                single_read_max_score=threshold,
                cancers_single_read=proportion_metric(workload.cancers_in_single_read_arm, workload.cancers),
                screens_single_read=proportion_metric(single, workload.exams),
                source=source,
            )
        )
    return tuple(found)
