"""The evaluation report as a typed object: what ``triage evaluate`` measured, read by attribute by
the HTML page, the CLI, MLflow and the card's evidence, and written once to JSON (``report.json``).

Every figure with an interval is a ``triage.cards.Metric`` (made in ``evaluation.intervals``), the
same type a model card carries, so a card's evidence block is this report's ``evidence`` as it is.
A figure that is not defined on the data (an AUROC with one class only, a PPV with nothing flagged)
is None, never a made-up number.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from evaluation.workload import Workload
from triage.cards import Evidence, Metric
from triage.pipelines import Pipeline


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class ModelRef(_Part):
    name: str
    version: str
    pipeline: Pipeline
    weights_sha256: str


class DatasetRef(_Part):
    """The manifest measured on, and what of it could be read."""

    manifest: str
    sha256: str
    images: int
    exams: int
    positive_exams: int
    skipped_images: int
    skipped: list[str]  # each unreadable image with why


class AtThreshold(_Part):
    """``probability >= threshold`` called positive: each proportion with its Wilson interval."""

    threshold: float
    sensitivity: Metric | None
    specificity: Metric | None
    ppv: Metric | None
    npv: Metric | None


class CalibrationBin(_Part):
    """One bar of the reliability diagram: exams whose output fell in [low, high)."""

    low: float
    high: float
    n: int
    mean_probability: float
    observed_rate: float


class RocPoint(_Part):
    model_config = ConfigDict(ser_json_inf_nan="constants")  # the first threshold is infinite

    false_positive_rate: float
    sensitivity: float
    threshold: float  # the first point's is infinity: nothing called positive


class FrocPoint(_Part):
    false_positives_per_image: float
    sensitivity: float


class Distribution(_Part):
    """Exams per label in equal probability bins from 0 to 1 (the histogram)."""

    positive: list[int]
    negative: list[int]


class Boxes(_Part):
    true_boxes: int
    map50: Metric  # n: images
    froc: list[FrocPoint]


class ScoreShare(_Part):
    """The exams given one 1-10 score: their share and the positive rate among them."""

    share: float
    n: int
    positive_rate: Metric | None


class Subgroup(_Part):
    exams: int
    positive_exams: int
    exam_auroc: Metric | None
    operating_points: dict[str, AtThreshold]


class EvaluationReport(_Part):
    """Every figure of one evaluation of one model on one labelled manifest."""

    model: ModelRef
    dataset: DatasetRef
    image_auroc: Metric | None
    exam_auroc: Metric | None
    brier: float
    calibration_error: Metric | None  # expected calibration error over exams, 10 bins
    calibration: list[CalibrationBin]
    roc: list[RocPoint]
    distribution: Distribution
    operating_points: dict[str, AtThreshold]
    scores: dict[int, ScoreShare] = {}  # screening: per 1-10 score
    workload: list[Workload] = []  # screening: at every single-reading threshold
    boxes: Boxes | None = None  # when the manifest has boxes and the model draws them
    evidence: Evidence
    subgroups: dict[str, dict[str, Subgroup]]  # column -> value -> figures

    def headline(self) -> dict[str, float]:
        """The headline numbers, flat, for MLflow and the terminal."""
        flat: dict[str, float] = {"brier": self.brier}
        for name, metric in (
            ("image_auroc", self.image_auroc),
            ("exam_auroc", self.exam_auroc),
            ("expected_calibration_error", self.calibration_error),
        ):
            if metric is not None:
                flat[name], flat[f"{name}_ci95_low"] = metric.value, metric.ci95_low
        for point, found in self.operating_points.items():
            for measure in ("sensitivity", "specificity", "ppv", "npv"):
                metric = getattr(found, measure)
                if metric is not None:
                    flat[f"{measure}_at_{point}"] = metric.value
        if self.boxes is not None:
            flat["map50"], flat["map50_ci95_low"] = self.boxes.map50.value, self.boxes.map50.ci95_low
        return flat

    def write_json(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def read_json(cls, path: Path) -> EvaluationReport:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))
