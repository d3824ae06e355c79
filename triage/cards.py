"""Model cards: what a model is, what it was trained on, how well it does, where it may be used.

A card travels with its weights (``card.json`` beside them, and in the registered model). No torch
here: the listener's intended-use gate reads cards too. ``FractureCard`` and ``BreastCard`` require
their operating points, so a card that exists can be run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import pydicom.uid
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from triage.header_facts import HeaderFacts
from triage.outcomes import FractureThresholds
from triage.pipelines import Pipeline


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


class DatasetCredit(_Frozen):
    """One data source a model was trained or evaluated on, with what its licence requires."""

    name: str
    licence: str
    attribution: str
    changes: str
    synthetic: bool = False


class Metric(_Frozen):
    """A figure on held-out data with its 95 % confidence interval."""

    value: float
    ci95_low: float
    ci95_high: float
    n: int


class RuleOutEvidence(_Frozen):
    """What lets NO FRACTURE mark a patient eligible for discharge: sensitivity at the DOUBT
    threshold on labelled exams never trained or tuned on (``n`` = the fractures among them)."""

    sensitivity_at_doubt: Metric
    doubt_threshold: float = Field(ge=0, le=1)
    source: str  # the manifest (or bundled test part) it was measured on, and by which command


class SingleReadEvidence(_Frozen):
    """What lets a screen go to one reader at scores up to ``single_read_max_score``: the share of
    cancers that landed in the single-read arm (``n`` = the cancers) and the share of screens there."""

    single_read_max_score: int = Field(ge=0, le=10)
    cancers_single_read: Metric
    screens_single_read: Metric
    source: str


class BoxEvidence(_Frozen):
    """What lets boxes be shown as findings: mAP at IoU 0.5 against radiologists' boxes."""

    map50: Metric
    source: str


class Evidence(_Frozen):
    """The validation evidence a card carries for each decision that lets a reader do less; the
    evidence gate (``triage.evidence``) weighs it against the site's bars. Absent: not shown."""

    rule_out: RuleOutEvidence | None = None
    single_read: tuple[SingleReadEvidence, ...] = ()  # one per single-reading threshold measured
    boxes: BoxEvidence | None = None


class IntendedUse(_Frozen):
    """Where the model may be used, in words and as rules the intended-use gate applies.

    ``routing.yaml`` chooses which pipeline a study goes to; the card can only narrow that: a study
    must satisfy both. Empty tuples mean "any".
    """

    statement: str
    modalities: tuple[str, ...]
    sop_classes: tuple[str, ...] = Field(description="pydicom keywords of the storage SOP classes")
    body_parts: tuple[str, ...] = ()  # Body Part Examined values (PS3.16 Annex L)
    views: tuple[str, ...] = ()  # CC, MLO for screens
    photometric_interpretations: tuple[str, ...] = ("MONOCHROME1", "MONOCHROME2")
    # Patients' ages the model is meant for (None: no bound); a patient whose age cannot be read from
    # the headers is outside a bounded range unless ``unknown_age_allowed``.
    min_age_years: float | None = Field(default=None, ge=0)
    max_age_years: float | None = Field(default=None, ge=0)
    unknown_age_allowed: bool = False
    lossy_allowed: bool = True  # images compressed lossily (now or before) may be analysed

    @field_validator("sop_classes")
    @classmethod
    def _known_sop_classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for keyword in value:
            if not isinstance(getattr(pydicom.uid, keyword, None), pydicom.uid.UID):
                raise ValueError(f"{keyword!r} is not a pydicom UID keyword of a SOP class")
        return value

    def why_not(self, sop_class_uid: str, facts: HeaderFacts) -> str | None:
        """Why one instance (its SOP class and header facts) is outside this use; None when it is inside."""
        if facts.modality not in self.modalities:
            return f"modality {facts.modality or 'missing'} is outside the model's intended use"
        if pydicom.uid.UID(sop_class_uid).keyword not in self.sop_classes:
            return f"SOP class {pydicom.uid.UID(sop_class_uid).name} is outside the model's intended use"
        if self.body_parts and facts.body_part_examined not in self.body_parts:
            return f"body part {facts.body_part_examined or 'missing'} is outside the model's intended use"
        if self.views and facts.view and facts.view not in self.views:
            return f"view {facts.view} is outside the model's intended use"
        if why := self._age_problem(facts.age_years):
            return why
        if facts.lossy and not self.lossy_allowed:
            return "a lossily compressed image is outside the model's intended use"
        if facts.photometric_interpretation not in self.photometric_interpretations:
            return (
                f"photometric interpretation {facts.photometric_interpretation} is outside the model's "
                "intended use"
            )
        return None

    def _age_problem(self, age: float | None) -> str | None:
        if self.min_age_years is None and self.max_age_years is None:
            return None
        if age is None:
            return None if self.unknown_age_allowed else "the patient's age is unknown (no age or birth date)"
        if self.min_age_years is not None and age < self.min_age_years:
            return f"a patient aged {age:g} is younger than the model's intended use ({self.min_age_years:g})"
        if self.max_age_years is not None and age > self.max_age_years:
            return f"a patient aged {age:g} is older than the model's intended use ({self.max_age_years:g})"
        return None


IMPORTED_ONNX = "onnx"  # the architecture of a site's own network, brought as an ONNX file


class OnnxContract(_Frozen):
    """How an imported ONNX network takes its input and gives its output, one image at a time.

    triage hands it what it hands its own networks: the image windowed to 0-1, resized keeping its
    aspect to ``input_size`` on the longer side and padded with 0 to a square (a mammogram turned so
    the chest wall is on the left); then ``(x - mean) / std``, repeated to ``channels``. A per-exam
    output (one number for four views) is not supported: triage forms the exam from the images.
    """

    channels: Literal[1, 3] = 1
    mean: float = 0.0
    std: float = Field(default=1.0, gt=0)
    output: Literal["probability", "logit"] = "probability"  # per image


class _Card(_Frozen):
    name: str
    version: str
    architecture: str
    input_size: int = Field(gt=0)
    intended_use: IntendedUse
    data: tuple[DatasetCredit, ...]
    preprocessing: str
    held_out: str
    metrics: dict[str, Metric]  # this model, on its own held-out test part
    # The training recipe, by grouped cross-validation: every fold's test part pooled (empty: not run).
    cross_validated: dict[str, Metric] = Field(default_factory=dict)
    evidence: Evidence = Field(default_factory=Evidence)
    # Average the image logit with that of the image mirrored left-right (one more forward pass).
    test_time_flip: bool = False
    onnx: OnnxContract | None = None  # only, and required, for the architecture "onnx"
    # The nine deciles of the exam probability on held-out exams: the reference the live score
    # distribution is compared with, per scanner (empty: none; a screening card's cut-points serve).
    reference_deciles: tuple[float, ...] = ()
    weights_file: str = "weights.pt"
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    reproduce: str
    created: str
    # How long the training run took and on what (a CPU's model and bfloat16 support, or a GPU), so a
    # site can plan a retraining; empty on cards written before it was recorded.
    trained: str = ""

    @field_validator("reference_deciles")
    @classmethod
    def _reference(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return check_cut_points(value) if value else value

    @property
    def drift_reference(self) -> tuple[float, ...]:
        """The deciles the score drift is measured against (empty: no reference)."""
        return self.reference_deciles

    @model_validator(mode="after")
    def _onnx_contract(self) -> Self:
        if (self.architecture == IMPORTED_ONNX) != (self.onnx is not None):
            raise ValueError(
                f'an "onnx" contract goes with, and only with, the architecture "{IMPORTED_ONNX}"'
            )
        return self

    def write(self, folder: Path) -> None:
        (folder / "card.json").write_text(
            json.dumps(self.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
        )


class FractureCard(_Card):
    """A fracture model's card: its two operating points are required."""

    pipeline: Literal[Pipeline.FRACTURE] = Pipeline.FRACTURE
    fracture_threshold: float
    doubt_threshold: float
    # On an image at or above DOUBT, the boxes shown: the box head's above this score, at most this many.
    box_min_score: float = Field(default=0.3, ge=0, le=1)
    max_boxes: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        self.thresholds  # noqa: B018 - validates their order
        return self

    @property
    def thresholds(self) -> FractureThresholds:
        return FractureThresholds(fracture=self.fracture_threshold, doubt=self.doubt_threshold)


def check_cut_points(cut_points: Sequence[float]) -> tuple[float, ...]:
    """Nine non-decreasing probabilities in [0, 1], or a ValueError saying what is wrong."""
    points = tuple(float(p) for p in cut_points)
    if len(points) != 9 or any(not 0.0 <= p <= 1.0 for p in points) or list(points) != sorted(points):
        raise ValueError(
            f"decile cut-points must be nine non-decreasing probabilities in [0, 1], got {points}"
        )
    return points


class BreastCard(_Card):
    """A screening model's card: the nine decile cut-points of its 1-10 score are required."""

    pipeline: Literal[Pipeline.BREAST] = Pipeline.BREAST
    decile_cut_points: tuple[float, ...]

    @field_validator("decile_cut_points")
    @classmethod
    def _nine(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        return check_cut_points(value)

    @property
    def drift_reference(self) -> tuple[float, ...]:
        """The 1-10 score's cut-points are the deciles of the reference screens by construction."""
        return self.reference_deciles or self.decile_cut_points


ModelCard = FractureCard | BreastCard
AnyCard = Annotated[FractureCard | BreastCard, Field(discriminator="pipeline")]
CARD: TypeAdapter[ModelCard] = TypeAdapter(AnyCard)  # type: ignore[arg-type, unused-ignore]

# What the cards written before intended use became structured (and the bundled ones) may be used on.
DEFAULT_INTENDED_USE = {
    Pipeline.FRACTURE: {
        "modalities": ["CR", "DX"],
        "sop_classes": ["ComputedRadiographyImageStorage", "DigitalXRayImageStorageForPresentation"],
        # Children's fractures (growth plates, greenstick, buckle) are not what it learnt to rule out.
        "min_age_years": 18,
    },
    Pipeline.BREAST: {
        "modalities": ["MG"],
        "sop_classes": ["DigitalMammographyXRayImageStorageForPresentation"],
        "views": ["CC", "MLO"],
        "lossy_allowed": False,  # screening reads the original pixels; a lossy copy is not a screen
    },
}


def parse_card(values: dict[str, Any]) -> ModelCard:
    """Validate a card's JSON; a card written before intended use was structured is read as one.

    Raises:
        pydantic.ValidationError: the card is invalid; the message names the field.
    """
    values = {key: value for key, value in values.items() if value is not None}
    if isinstance(values.get("intended_use"), str):
        pipeline = Pipeline(values.get("pipeline", ""))
        values["intended_use"] = {"statement": values["intended_use"], **DEFAULT_INTENDED_USE[pipeline]}
    return CARD.validate_python(values)


def read_card(folder: Path) -> ModelCard:
    """The card in ``folder/card.json``.

    Raises:
        OSError: no card there.
        pydantic.ValidationError: the card is invalid.
    """
    return parse_card(json.loads((folder / "card.json").read_text(encoding="utf-8")))
