"""What a pipeline hands back to the task: a result, or the reason it took the conservative path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelIdentity:
    """Names the exact model behind a result (every result carries one)."""

    name: str
    version: str
    weights_sha256: str


@dataclass(frozen=True)
class Analysed:
    """A pipeline's result for one study version; ``outcome`` is JSON-ready."""

    summary: str
    model: ModelIdentity
    outcome: dict[str, Any]
    inputs: list[dict[str, str]] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"


@dataclass(frozen=True)
class Skipped:
    """The study could not be analysed; it takes the conservative path for ``reason``."""

    reason: str
    model: ModelIdentity | None = None
    outcome: dict[str, Any] = field(default_factory=dict)


Mark = tuple[str, list[float], float]  # (SOP Instance UID, [x0, y0, x1, y1] in source pixels, score)


def outcome_marks(pipeline: str, outcome: dict[str, Any]) -> list[Mark]:
    """Every box a pipeline's outcome holds: fractures per image, or lesions per view."""
    if pipeline == "fracture":
        return [
            (image["sop_instance_uid"], box["corners"], box["score"])
            for image in outcome.get("images", [])
            for box in image["boxes"]
        ]
    return [
        (view["sop_instance_uid"], lesion["corners"], lesion["score"])
        for view in outcome.get("per_view", [])
        for lesion in view.get("lesions", [])
    ]
