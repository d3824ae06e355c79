"""The evidence gate: a decision that lets a reader do less is taken only where the model in force
carries validation evidence that meets the site's bar.

Three decisions (``triage.outcomes.Decision``): a rule-out (NO FRACTURE marks a patient eligible for
discharge), single reading of a screen, and boxes shown as findings. The evidence is data in the
model's card (``triage.cards.Evidence``, written by ``triage calibrate`` and by training from labelled
exams the model never trained or was tuned on); the bars are settings. A decision the evidence does
not support is off: the study takes the conservative path (normal reading, double reading, no boxes)
and its result says so, while the probability or score is still computed, kept and shown as advisory,
so a site can collect its own evidence. Two admins may enable a decision against the evidence, with a
reason (one proposes, another approves: ``triage.records.decision_changes``, audited); the result
names that override. A decision switched off (by the live evidence,
``triage.records.live_evidence``, or by an admin) is off whatever the card or an override says,
until an admin resumes it.

The gate is applied to the outcome when the result is made and frozen into it, so the SR, the summary
image, the page and the stored verdict all read the same decision, and a re-sent SR is the same object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from triage.cards import BreastCard, FractureCard, ModelCard
from triage.outcomes import BreastOutcome, Decision, FractureOutcome, Route
from triage.pipelines import Pipeline
from triage.settings import Settings

DECISIONS: dict[Pipeline, tuple[Decision, ...]] = {
    Pipeline.FRACTURE: (Decision.RULE_OUT, Decision.BOXES),
    Pipeline.BREAST: (Decision.SINGLE_READ, Decision.BOXES),
}


@dataclass(frozen=True)
class Bars:
    """The site's bars (settings ``evidence_*``); the defaults and why are in ``triage.settings``."""

    rule_out_min_sensitivity_low: float
    rule_out_min_fractures: int
    single_read_max_cancers_high: float
    single_read_min_cancers: int
    boxes_min_map50: float

    @classmethod
    def of(cls, settings: Settings) -> Bars:
        return cls(
            rule_out_min_sensitivity_low=settings.evidence_rule_out_min_sensitivity_low,
            rule_out_min_fractures=settings.evidence_rule_out_min_fractures,
            single_read_max_cancers_high=settings.evidence_single_read_max_cancers_high,
            single_read_min_cancers=settings.evidence_single_read_min_cancers,
            boxes_min_map50=settings.evidence_boxes_min_map50,
        )


@dataclass(frozen=True)
class Gate:
    """Per decision of a model: why it is off (``not_enabled``), or who enabled it against the
    evidence and why (``overridden``). A decision in neither is supported by the evidence."""

    not_enabled: dict[Decision, str] = field(default_factory=dict)
    overridden: dict[Decision, str] = field(default_factory=dict)
    claims: dict[Decision, float] = field(default_factory=dict)  # the card's, for the live evidence

    def enabled(self, decision: Decision) -> bool:
        return decision not in self.not_enabled


def why_not(card: ModelCard, decision: Decision, bars: Bars, single_read_max_score: int) -> str | None:
    """Why the card's evidence does not support ``decision`` at the site's bar; None when it does."""
    evidence = card.evidence
    if decision is Decision.RULE_OUT and isinstance(card, FractureCard):
        rule_out = evidence.rule_out
        if rule_out is None:
            return (
                "the model's card carries no rule-out evidence (sensitivity at DOUBT on held-out fractures)"
            )
        if abs(rule_out.doubt_threshold - card.doubt_threshold) > 1e-9:
            return (
                f"the rule-out evidence was measured at DOUBT {rule_out.doubt_threshold:g}, not at the "
                f"threshold in force ({card.doubt_threshold:g})"
            )
        found = rule_out.sensitivity_at_doubt
        if found.n < bars.rule_out_min_fractures:
            return (
                f"sensitivity at DOUBT was measured on {found.n} fractures; the site's bar asks for at "
                f"least {bars.rule_out_min_fractures}"
            )
        if found.ci95_low < bars.rule_out_min_sensitivity_low:
            return (
                f"sensitivity at DOUBT {found.value:.3f} (95 % lower bound {found.ci95_low:.3f}, "
                f"{found.n} fractures) is below the site's bar (lower bound at least "
                f"{bars.rule_out_min_sensitivity_low:g})"
            )
        return None
    if decision is Decision.SINGLE_READ and isinstance(card, BreastCard):
        if single_read_max_score == 0:
            return None  # nothing is single read: there is no decision to support
        covering = sorted(
            (e for e in evidence.single_read if e.single_read_max_score >= single_read_max_score),
            key=lambda e: e.single_read_max_score,
        )
        if not covering:
            return (
                "the model's card carries no single-reading evidence at a threshold of "
                f"{single_read_max_score} or above (cancers in the single-read arm on held-out screens)"
            )
        # A higher threshold single-reads a superset of screens: its cancers bound this threshold's.
        found = covering[0].cancers_single_read
        if found.n < bars.single_read_min_cancers:
            return (
                f"cancers in the single-read arm were counted among {found.n} cancers; the site's bar "
                f"asks for at least {bars.single_read_min_cancers}"
            )
        if found.ci95_high > bars.single_read_max_cancers_high:
            return (
                f"{found.value:.0%} of cancers went to the single-read arm (95 % upper bound "
                f"{found.ci95_high:.0%}, {found.n} cancers), above the site's bar (upper bound at most "
                f"{bars.single_read_max_cancers_high:.0%})"
            )
        return None
    if decision is Decision.BOXES:
        boxes = evidence.boxes
        if boxes is None:
            return "the model's card carries no localisation evidence (mAP@50 against radiologists' boxes)"
        if boxes.map50.value < bars.boxes_min_map50:
            return (
                f"mAP@50 {boxes.map50.value:.2f} (95 % CI "
                f"{boxes.map50.ci95_low:.2f}-{boxes.map50.ci95_high:.2f}) is below the site's bar "
                f"({bars.boxes_min_map50:g})"
            )
        return None
    return f"{decision.label} is not a decision of the {card.pipeline} pipeline"


def claims(card: ModelCard, single_read_max_score: int) -> dict[Decision, float]:
    """What the card claims for the decisions the live evidence watches: the sensitivity at DOUBT,
    and the share of cancers single-read at the threshold in force (or the nearest above it)."""
    evidence = card.evidence
    if isinstance(card, FractureCard) and evidence.rule_out is not None:
        return {Decision.RULE_OUT: evidence.rule_out.sensitivity_at_doubt.value}
    covering = sorted(
        (e for e in evidence.single_read if e.single_read_max_score >= single_read_max_score),
        key=lambda e: e.single_read_max_score,
    )
    if isinstance(card, BreastCard) and covering and single_read_max_score > 0:
        return {Decision.SINGLE_READ: covering[0].cancers_single_read.value}
    return {}


def gate_for(
    card: ModelCard,
    bars: Bars,
    single_read_max_score: int,
    overrides: Mapping[Decision, str] | None = None,
    switched_off: Mapping[Decision, str] | None = None,
) -> Gate:
    """The gate for a model: each of its pipeline's decisions weighed; ``overrides`` are the admins'
    (decision -> who and why), which enable a decision the evidence does not support;
    ``switched_off`` (decision -> why) turns a decision off whatever the evidence or an override."""
    gate = Gate(claims=claims(card, single_read_max_score))
    for decision in DECISIONS[card.pipeline]:
        if switched_off and decision in switched_off:
            gate.not_enabled[decision] = f"switched off: {switched_off[decision]}"
            continue
        why = why_not(card, decision, bars, single_read_max_score)
        if why is None:
            continue
        if overrides and decision in overrides:
            gate.overridden[decision] = f"{overrides[decision]}; the evidence: {why}"
        else:
            gate.not_enabled[decision] = why
    return gate


AnyOutcome = TypeVar("AnyOutcome", FractureOutcome, BreastOutcome)


def apply(outcome: AnyOutcome, gate: Gate) -> AnyOutcome:
    """The outcome with the gate frozen into it: a screen whose score would single-read it goes to
    double reading when single reading is off; NO FRACTURE reads as NORMAL READING when the rule-out
    is off (``FractureOutcome.verdict``); boxes are kept but not shown when localisation is off."""
    if not outcome.analysed:
        return outcome
    values = {
        **outcome.model_dump(),
        "not_enabled": dict(gate.not_enabled),
        "overridden": dict(gate.overridden),
        "claims": dict(gate.claims),
    }
    if isinstance(outcome, BreastOutcome) and not gate.enabled(Decision.SINGLE_READ):
        values["route"] = Route.DOUBLE_READ
    return type(outcome).model_validate(values)


DEFAULT_BARS = Bars(
    **{
        name.removeprefix("evidence_"): Settings.model_fields[name].default
        for name in Settings.model_fields
        if name.startswith("evidence_")
    }
)

OverridesFor = Callable[[str, str], Mapping[Decision, str]]  # (model name, version) -> overrides
SwitchesFor = Callable[[Pipeline], Mapping[Decision, str]]  # pipeline -> decisions switched off, why


class Gatekeeper:
    """Weighs a model's card at the site's bars, with the admins' overrides for that model version
    and the decisions switched off, read each time it is asked (so a change acts on the next study)."""

    def __init__(
        self,
        bars: Bars = DEFAULT_BARS,
        overrides: OverridesFor | None = None,
        switches: SwitchesFor | None = None,
    ) -> None:
        self._bars = bars
        self._overrides = overrides
        self._switches = switches

    def __call__(self, card: ModelCard, single_read_max_score: int = 0) -> Gate:
        found = self._overrides(card.name, card.version) if self._overrides is not None else {}
        off = self._switches(card.pipeline) if self._switches is not None else {}
        return gate_for(card, self._bars, single_read_max_score, found, off)
