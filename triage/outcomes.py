"""What triage said about a study: typed, frozen outcomes, their marks and their verdict.

A pipeline returns a ``FractureOutcome`` or a ``BreastOutcome``; a result stores it as JSON (the
``pipeline`` field tells them apart); the SR, the summary image, the worklist, the label export, the
shadow report and the metrics read it back as the same type. An outcome that could not be analysed
is still an outcome: its state (fracture) or score (breast) is None and ``reason`` says why.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from triage.pipelines import Pipeline

Corners = tuple[float, float, float, float]  # x0, y0, x1, y1 in source pixels, top-left origin


class FractureState(enum.StrEnum):
    """The fracture pipeline's three answers, from the model card's two thresholds."""

    FRACTURE = "FRACTURE"  # at or above the high-specificity threshold
    DOUBT = "DOUBT"  # at or above the high-sensitivity threshold
    NO_FRACTURE = "NO_FRACTURE"  # below it: the only state that may mark "eligible for discharge"


class Route(enum.StrEnum):
    """Where a screen goes: one reader, or two."""

    SINGLE_READ = "SINGLE_READ"
    DOUBLE_READ = "DOUBLE_READ"


class Verdict(enum.StrEnum):
    """What the worklist and the reports say of a study: an outcome's answer, or why there is none."""

    FRACTURE = "FRACTURE"
    DOUBT = "DOUBT"
    NO_FRACTURE = "NO_FRACTURE"
    SINGLE_READ = "SINGLE_READ"
    DOUBLE_READ = "DOUBLE_READ"
    # Below DOUBT, from a model whose evidence does not support a rule-out (triage.evidence): the
    # probability is advisory and the study is read as usual, never marked eligible for discharge.
    NORMAL_READING = "NORMAL_READING"
    NOT_ANALYSED = "NOT_ANALYSED"  # the conservative path: normal reading, or double reading
    PENDING = "PENDING"  # triage has not finished with it: read it as usual if it cannot wait
    IGNORED = "IGNORED"  # not a study triage analyses

    @property
    def label(self) -> str:
        """The words shown to a reader: ``NO FRACTURE``, ``NOT ANALYSED``."""
        return self.value.replace("_", " ")


class Decision(enum.StrEnum):
    """A decision that lets a reader do less; each is taken only where the model's validation
    evidence meets the site's bar (``triage.evidence``), or an admin overrode that, audited."""

    RULE_OUT = "rule_out"  # NO FRACTURE marks a patient eligible for discharge
    SINGLE_READ = "single_read"  # a screen goes to one reader
    BOXES = "boxes"  # the model's boxes are shown as findings

    @property
    def label(self) -> str:
        return {"rule_out": "rule-out (eligible for discharge)", "single_read": "single reading",
                "boxes": "localisation (boxes)"}[self.value]  # fmt: skip


class MarkKind(enum.StrEnum):
    """How a box is drawn: solid red for a fracture, dashed yellow for doubt, dashed orange for a lesion."""

    FRACTURE = "fracture"
    DOUBT = "doubt"
    LESION = "lesion"


@dataclass(frozen=True)
class Mark:
    """One box to show on a source image."""

    sop_instance_uid: str
    corners: Corners
    score: float
    kind: MarkKind


@dataclass(frozen=True)
class ModelIdentity:
    """Names the exact model behind a result (every result carries one)."""

    name: str
    version: str
    weights_sha256: str


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Box(_Frozen):
    """A detection on a source image, with its score (0-1)."""

    corners: Corners
    score: float


class FractureThresholds(_Frozen):
    """The card's operating points; ``doubt`` is the lower (high-sensitivity) one."""

    fracture: float
    doubt: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not 0.0 <= self.doubt <= self.fracture <= 1.0:
            raise ValueError(
                f"thresholds must satisfy 0 <= doubt ({self.doubt}) <= fracture ({self.fracture}) <= 1"
            )
        return self

    def state_for(self, probability: float) -> FractureState | None:
        """FRACTURE / DOUBT / NO FRACTURE for a valid probability; None for an invalid one."""
        if not math.isfinite(probability) or not 0.0 <= probability <= 1.0:
            return None
        if probability >= self.fracture:
            return FractureState.FRACTURE
        if probability >= self.doubt:
            return FractureState.DOUBT
        return FractureState.NO_FRACTURE


class ImageFindings(_Frozen):
    sop_instance_uid: str
    probability: float | None = None  # the image's own (results before it was stored have none)
    boxes: tuple[Box, ...] = ()


class FractureOutcome(_Frozen):
    """A trauma study's result: state and probability (None when not analysed), boxes per image."""

    pipeline: Literal[Pipeline.FRACTURE] = Pipeline.FRACTURE
    state: FractureState | None = None
    probability: float | None = None
    thresholds: FractureThresholds | None = None
    images: tuple[ImageFindings, ...] = ()
    skipped: dict[str, str] = Field(default_factory=dict)  # SOP Instance UID -> why it was left out
    reason: str = ""  # why it was not analysed
    # The evidence gate as it stood when the result was made, frozen with it: each decision the
    # model's evidence does not support, and why; each enabled against the evidence, by whom and why.
    not_enabled: dict[Decision, str] = Field(default_factory=dict)
    overridden: dict[Decision, str] = Field(default_factory=dict)
    # What the model's card claims for each decision it has evidence for, frozen with the result:
    # the live evidence is tested against it (rule-out: sensitivity at DOUBT; single reading: the
    # share of cancers in the single-read arm).
    claims: dict[Decision, float] = Field(default_factory=dict)

    @property
    def analysed(self) -> bool:
        return self.state is not None

    @property
    def verdict(self) -> Verdict:
        if self.state is None:
            return Verdict.NOT_ANALYSED
        if self.state is FractureState.NO_FRACTURE and Decision.RULE_OUT in self.not_enabled:
            return Verdict.NORMAL_READING
        return Verdict(self.state)

    @property
    def eligible_for_discharge(self) -> bool:
        """Only NO FRACTURE, from a model whose evidence supports the rule-out, may mark a patient
        eligible for discharge per local protocol."""
        return self.verdict is Verdict.NO_FRACTURE

    @property
    def flagged(self) -> bool | None:
        """Whether it sends the study to a reader's attention (FRACTURE or DOUBT); None: not analysed."""
        return None if self.state is None else self.state is not FractureState.NO_FRACTURE

    @property
    def marks(self) -> tuple[Mark, ...]:
        """Every box, drawn as FRACTURE when its image (or, stored without one, the box) reaches the
        FRACTURE threshold, else as DOUBT."""
        if Decision.BOXES in self.not_enabled:
            return ()
        threshold = self.thresholds.fracture if self.thresholds else 1.0
        return tuple(
            Mark(
                image.sop_instance_uid,
                box.corners,
                box.score,
                MarkKind.FRACTURE
                if (image.probability if image.probability is not None else box.score) >= threshold
                else MarkKind.DOUBT,
            )
            for image in self.images
            for box in image.boxes
        )


class ViewFindings(_Frozen):
    sop_instance_uid: str
    laterality: str
    view: str
    probability: float
    lesions: tuple[Box, ...] = ()


class BreastOutcome(_Frozen):
    """A screen's result: the 1-10 score and its route (score None: not scored, double reading)."""

    pipeline: Literal[Pipeline.BREAST] = Pipeline.BREAST
    score: int | None = Field(default=None, ge=1, le=10)
    route: Route = Route.DOUBLE_READ
    high_risk: bool = False
    probability: float | None = None
    single_read_max_score: int | None = None
    decile_cut_points: tuple[float, ...] | None = None
    per_breast: dict[str, float] = Field(default_factory=dict)
    per_view: tuple[ViewFindings, ...] = ()
    skipped: dict[str, str] = Field(default_factory=dict)
    reason: str = ""
    not_enabled: dict[Decision, str] = Field(default_factory=dict)  # as on FractureOutcome
    overridden: dict[Decision, str] = Field(default_factory=dict)
    claims: dict[Decision, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unscored_is_double_read(self) -> Self:
        if self.score is None and (self.route is not Route.DOUBLE_READ or self.high_risk):
            raise ValueError("a screen without a score goes to double reading and is not high risk")
        if self.route is Route.SINGLE_READ and Decision.SINGLE_READ in self.not_enabled:
            raise ValueError("single reading is not enabled for this model: the screen is double read")
        return self

    @property
    def analysed(self) -> bool:
        return self.score is not None

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.route) if self.score is not None else Verdict.NOT_ANALYSED

    @property
    def eligible_for_discharge(self) -> bool:
        return False

    @property
    def flagged(self) -> bool | None:
        """Whether it goes to double reading; None: not scored."""
        return None if self.score is None else self.route is Route.DOUBLE_READ

    @property
    def marks(self) -> tuple[Mark, ...]:
        if Decision.BOXES in self.not_enabled:
            return ()
        return tuple(
            Mark(view.sop_instance_uid, lesion.corners, lesion.score, MarkKind.LESION)
            for view in self.per_view
            for lesion in view.lesions
        )


Outcome = Annotated[FractureOutcome | BreastOutcome, Field(discriminator="pipeline")]
OUTCOME: TypeAdapter[FractureOutcome | BreastOutcome] = TypeAdapter(Outcome)  # type: ignore[arg-type, unused-ignore]


def not_analysed(
    pipeline: Pipeline, reason: str, skipped: dict[str, str] | None = None
) -> FractureOutcome | BreastOutcome:
    """The conservative outcome of a pipeline: no state or score, the reason, the images left out."""
    if pipeline is Pipeline.FRACTURE:
        return FractureOutcome(reason=reason, skipped=skipped or {})
    return BreastOutcome(reason=reason, skipped=skipped or {})


@dataclass(frozen=True)
class Analysed:
    """A pipeline's result for one study version."""

    summary: str
    model: ModelIdentity
    outcome: FractureOutcome | BreastOutcome
    inputs: list[dict[str, str]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"


@dataclass(frozen=True)
class Skipped:
    """The study could not be analysed; it takes the conservative path for ``reason``."""

    pipeline: Pipeline
    reason: str
    model: ModelIdentity | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def outcome(self) -> FractureOutcome | BreastOutcome:
        return not_analysed(self.pipeline, self.reason, self.skipped)
