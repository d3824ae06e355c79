"""`triage calibrate`: choose a model's operating points on a site's labelled set, measure them on
held-out exams, and write the model again with those points in its card.

Exams whose manifest split is ``test`` measure; the others choose. A manifest without splits is
divided by a hash of the exam id, half and half. Fracture: DOUBT is the highest threshold whose
sensitivity's 95 % lower bound reaches the target, FRACTURE the lowest whose specificity's lower
bound reaches its target (never below DOUBT). Screening: the nine decile cut-points of the choosing
exams' probabilities.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from evaluation.evaluate import Exam, exams, predict
from evaluation.evidence import fracture_evidence, single_read_evidence
from evaluation.intervals import metric_with_ci, proportion_metric
from evaluation.operating_points import (
    decile_cut_points,
    threshold_for_sensitivity_bound,
    threshold_for_specificity_bound,
)
from inference.breast import score_for
from inference.model import LoadedModel
from triage.cards import CARD, Evidence, FractureCard, Metric, ModelCard
from triage.manifests import Sample


def _hashed_half(exam: str) -> bool:
    return bool(int(hashlib.sha256(exam.encode()).hexdigest(), 16) % 2)


def _split(found: Sequence[Exam], test_exams: set[str]) -> tuple[list[Exam], list[Exam]]:
    if not test_exams:  # no split given: half and half by a hash of the exam id
        test_exams = {e.exam for e in found if _hashed_half(e.exam)}
    return [e for e in found if e.exam not in test_exams], [e for e in found if e.exam in test_exams]


def held_out(samples: Sequence[Sample]) -> list[Sample]:
    """The images of the exams calibration measures on (never chooses on)."""
    test_exams = {s.exam or s.group for s in samples if s.split == "test"}
    if test_exams:
        return [s for s in samples if (s.exam or s.group) in test_exams]
    return [s for s in samples if _hashed_half(s.exam or s.group)]


def calibrate(
    model: LoadedModel,
    source: Path,
    samples: Sequence[Sample],
    manifest: Path,
    out: Path,
    version: str,
    target_sensitivity: float = 0.9,
    target_specificity: float = 0.9,
) -> ModelCard:
    """Write ``source``'s weights into ``out`` with a card carrying the new operating points."""
    card = model.card
    found = exams(predict(model, samples).images, card.pipeline)
    test_exams = {s.exam or s.group for s in samples if s.split == "test"}
    choose, measure = _split(found, test_exams)
    if not choose or not measure or len({e.label for e in measure}) < 2:
        raise ValueError(
            "calibration needs exams to choose on and held-out exams of both classes to measure on"
        )
    held_out = (
        f"calibrated with triage calibrate on manifest {manifest.name}: operating points chosen on "
        f"{len(choose)} exams, measured on {len(measure)} other exams "
        f"({sum(e.label for e in measure)} positive); targets: sensitivity {target_sensitivity} and "
        f"specificity {target_specificity} (95 % lower bounds)"
    )
    measured_on = (
        f"triage calibrate on {manifest.name}: {len(measure)} held-out exams, {len(choose)} chosen on"
    )
    measured: dict[str, Metric] = {
        "exam_auroc": metric_with_ci("auroc", [e.label for e in measure], [e.probability for e in measure])
    }
    updates: dict[str, object] = {}
    if isinstance(card, FractureCard):
        labels, scores = [e.label for e in choose], [e.probability for e in choose]
        doubt = threshold_for_sensitivity_bound(labels, scores, target_sensitivity)
        fracture = max(doubt, threshold_for_specificity_bound(labels, scores, target_specificity))
        updates = {"doubt_threshold": doubt, "fracture_threshold": fracture}
        positives = [e for e in measure if e.label == 1]
        negatives = [e for e in measure if e.label == 0]
        for name, threshold in (("doubt", doubt), ("fracture", fracture)):
            measured[f"sensitivity_at_{name}"] = proportion_metric(
                sum(e.probability >= threshold for e in positives), len(positives)
            )
            measured[f"specificity_at_{name}"] = proportion_metric(
                sum(e.probability < threshold for e in negatives), len(negatives)
            )
        measured["auroc"] = measured["exam_auroc"]
        # Boxes are not measured here: their evidence is not carried over to other thresholds.
        updates["evidence"] = fracture_evidence(measured, doubt, measured_on)
    else:
        cut_points = decile_cut_points([e.probability for e in choose])
        exam_scores = [score_for(e.probability, cut_points) for e in measure]
        evidence = Evidence(
            single_read=single_read_evidence(exam_scores, [int(e.label) for e in measure], measured_on)
        )
        updates = {"decile_cut_points": cut_points, "evidence": evidence}
    # The score drift's reference: the site's own exams, every one of them.
    updates["reference_deciles"] = decile_cut_points([e.probability for e in found])
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / card.weights_file, out / card.weights_file)
    new = CARD.validate_python(
        {
            **card.model_dump(),
            **updates,
            "version": version,
            "metrics": measured,
            "held_out": held_out,
            "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "reproduce": f"{card.reproduce}; then triage calibrate {source} {manifest} --version {version}",
        }
    )
    new.write(out)
    return new
