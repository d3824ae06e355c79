"""Routing rules and the intended-use gate: which pipeline analyses a study, or why none does.

Everything here is a pure function of the header facts stored per instance, so a decision can be
re-made at any time from the database alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom.uid
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from triage.cards import IntendedUse
from triage.header_facts import HeaderFacts
from triage.pipelines import Pipeline


class PipelineConfig(BaseModel):
    """When a study bound for one pipeline is complete, and how long its result may take."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quiet_period_seconds: float = Field(gt=0)
    completion_deadline_seconds: float = Field(gt=0)
    result_deadline_seconds: float = Field(gt=0)
    expected_views: tuple[str, ...] = ()
    # What a study of this pipeline gets when triage does not analyse it, shown with the reason.
    conservative_reading: str

    @model_validator(mode="after")
    def _deadline_after_quiet(self) -> PipelineConfig:
        if self.completion_deadline_seconds < self.quiet_period_seconds:
            raise ValueError("completion_deadline_seconds must not be shorter than quiet_period_seconds")
        return self


class Rule(BaseModel):
    """Instances of these modalities, SOP classes and (optionally) body parts go to ``pipeline``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    pipeline: Pipeline
    modalities: frozenset[str]
    sop_classes: frozenset[str]
    body_parts: frozenset[str] = frozenset()
    # Instances of these classes make a study this rule's kind even when the rule takes none of them
    # (a DBT-only screen): the study goes NOT ANALYSED, the conservative reading, instead of IGNORED.
    not_analysed_sop_classes: frozenset[str] = frozenset()

    @field_validator("sop_classes", "not_analysed_sop_classes", mode="before")
    @classmethod
    def _resolve_keywords(cls, value: object) -> object:
        if not isinstance(value, list | tuple | set | frozenset):
            return value
        uids = set()
        for keyword in value:
            uid = getattr(pydicom.uid, str(keyword), None)
            if not isinstance(uid, pydicom.uid.UID):
                raise ValueError(f"{keyword!r} is not a pydicom UID keyword of a SOP class")
            uids.add(str(uid))
        return frozenset(uids)

    def why_not(self, sop_class_uid: str, facts: HeaderFacts) -> str | None:
        """Return why this rule does not take an instance, or None when it does."""
        if facts.modality not in self.modalities:
            return f"modality {facts.modality or 'missing'} is not one of {sorted(self.modalities)}"
        if sop_class_uid not in self.sop_classes:
            return f"SOP class {pydicom.uid.UID(sop_class_uid).name} is not analysed"
        if self.body_parts and facts.body_part_examined not in self.body_parts:
            return f"body part {facts.body_part_examined or 'missing'} is not in the intended use"
        return None


class RoutingConfig(BaseModel):
    """The routing file: pipelines with their completion policy, and the ordered rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipelines: dict[Pipeline, PipelineConfig]
    unrouted_quiet_period_seconds: float = Field(gt=0)
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _rules_name_pipelines(self) -> RoutingConfig:
        for rule in self.rules:
            if rule.pipeline not in self.pipelines:
                raise ValueError(f"rule {rule.name!r} names pipeline '{rule.pipeline}', which is not defined")
        return self

    @classmethod
    def load(cls, path: Path) -> RoutingConfig:
        """Read and validate a routing YAML file."""
        with path.open(encoding="utf-8") as stream:
            return cls.model_validate(yaml.safe_load(stream))


@dataclass(frozen=True)
class InstanceFacts:
    """What routing knows of one stored instance."""

    storage_key: str
    sop_instance_uid: str
    sop_class_uid: str
    sha256: str
    facts: HeaderFacts


@dataclass(frozen=True)
class Route:
    """A study goes to ``pipeline``; ``analysed`` are its instances the pipeline takes."""

    pipeline: Pipeline
    rule: str
    analysed: tuple[InstanceFacts, ...]
    skipped: dict[str, str] = field(default_factory=dict)  # sop_instance_uid -> reason


@dataclass(frozen=True)
class Unrouted:
    """No rule takes any instance of the study; it is stored and ignored, unless it is of a pipeline's
    kind (``pipeline``: a rule's ``not_analysed_sop_classes``), when it takes the conservative path."""

    reason: str
    pipeline: Pipeline | None = None


@dataclass(frozen=True)
class NotAnalysed:
    """The study is routed but outside the intended use; it takes the conservative path."""

    reason: str


def route(config: RoutingConfig, instances: Sequence[InstanceFacts]) -> Route | Unrouted:
    """Apply the first rule that takes at least one instance of the study."""
    if not instances:
        return Unrouted("the study has no instances")
    reasons = []
    for rule in config.rules:
        taken, skipped = [], {}
        for instance in instances:
            why = rule.why_not(instance.sop_class_uid, instance.facts)
            if why is None:
                taken.append(instance)
            else:
                skipped[instance.sop_instance_uid] = why
        if taken:
            return Route(rule.pipeline, rule.name, tuple(taken), skipped)
        reasons.append(f"not a {rule.name}: {sorted(set(skipped.values()))[0]}")
    for rule in config.rules:
        kind = [i for i in instances if i.sop_class_uid in rule.not_analysed_sop_classes]
        if kind:
            names = sorted({pydicom.uid.UID(i.sop_class_uid).name for i in kind})
            why = f"a {rule.name} with none of the images triage analyses (only {', '.join(names)})"
            return Unrouted(why, rule.pipeline)
    return Unrouted("; ".join(reasons) if reasons else "no routing rules are configured")


def gate(config: RoutingConfig, decision: Route, intended_use: IntendedUse | None) -> Route | NotAnalysed:
    """Check a routed study against its pipeline's intended use: the model card's (every image the
    rule took must be inside it; the routing file chooses, the card can only narrow) and, for
    screens, the expected views (PS3.16 CID 4014)."""
    problems = []
    if intended_use is not None:
        for instance in decision.analysed:
            why = intended_use.why_not(instance.sop_class_uid, instance.facts)
            if why is not None:
                problems.append(f"{why} ({instance.sop_instance_uid})")
    expected = config.pipelines[decision.pipeline].expected_views
    if expected:
        problems += _screen_problems(decision, expected)
    if problems:
        return NotAnalysed("; ".join(dict.fromkeys(problems)))
    return decision


def _screen_problems(decision: Route, expected: tuple[str, ...]) -> list[str]:
    problems, present = [], set()
    for instance in decision.analysed:
        facts = instance.facts
        if facts.breast_implant_present == "YES":
            problems.append("a breast implant is present")
        if facts.laterality not in {"L", "R"}:
            problems.append(f"an image has no laterality ({instance.sop_instance_uid})")
        elif not facts.view:
            problems.append(f"an image has no view ({instance.sop_instance_uid})")
        elif facts.view_modifier:  # a work-up image: this is no screen, whatever its four views
            problems.append(
                f"a diagnostic view ({facts.view_modifier.lower()}) is present ({instance.sop_instance_uid})"
            )
        else:
            present.add(f"{facts.laterality}-{facts.view}")
    missing = [view for view in expected if view not in present]
    if missing:
        problems.append(f"incomplete screen: missing {', '.join(missing)}")
    return problems


def expected_views_present(config: RoutingConfig, decision: Route) -> bool:
    """Whether every expected view of the pipeline has arrived (False when none are expected)."""
    expected = config.pipelines[decision.pipeline].expected_views
    present = {f"{i.facts.laterality}-{i.facts.view}" for i in decision.analysed}
    return bool(expected) and set(expected) <= present
