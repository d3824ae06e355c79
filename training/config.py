"""TrainConfig: YAML data validated once, overlays merged in order (no expressions, no paths)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from triage.pipelines import Pipeline


class TrainConfig(BaseModel):
    """One training run. Data location is given on the command line, never in the YAML."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipeline: Pipeline
    # A public set read by its adapter (training/adapters.py; mini_mias_abnormal counts benign findings
    # as positive too), or "manifest": --data names a manifest CSV (triage/manifests.py).
    dataset: Literal["fracatlas", "mini_mias", "mini_mias_abnormal", "manifest"]
    name: str
    version: str
    input_size: int = Field(gt=0, multiple_of=32)
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0, default=1e-4)
    seed: int = 0
    # centrepoint-lite0 learns from boxes (fractures, lesions); classifier-lite0 from image labels only;
    # fracture-lite0 from both (its image logit decides, its boxes show where).
    architecture: Literal["centrepoint-lite0", "classifier-lite0", "fracture-lite0"] = "centrepoint-lite0"
    pretrained: bool = True
    # The stem and this many of the backbone's first stages keep their ImageNet weights: no gradient
    # flows through the high-resolution layers, which halves a CPU step at 384 px (measured with
    # bfloat16 on one thread of an AMX CPU: 5.2 s per batch of 16 whole, 3.4 s with two stages frozen).
    frozen_stages: int = Field(ge=0, le=7, default=0)
    augment: bool = True  # mirror, rotate, scale, shift, brightness, contrast, gamma (training/augment.py)
    warmup_epochs: float = Field(ge=0, default=0.5)
    ema_decay: float = Field(ge=0, lt=1, default=0.995)  # the averaged weights are what is kept
    detection_weight: float = Field(ge=0, default=1.0)  # fracture-lite0: boxes against the image label
    mixed_precision: bool = False  # bfloat16 on CPUs that have it, float16 on CUDA
    test_time_flip: bool = False  # the card's: average the image logit with the mirrored image's
    # Grouped cross-validation: with folds > 1 the test part is fold test_fold, validation_fraction of
    # the other groups choose the operating points, and test_fraction is not used.
    folds: int = Field(ge=0, default=0)
    test_fold: int = Field(ge=0, default=0)
    validation_fraction: float = Field(ge=0, lt=1)
    test_fraction: float = Field(gt=0, lt=1)
    target_sensitivity: float = Field(gt=0, le=1, default=0.9)
    target_specificity: float = Field(gt=0, le=1, default=0.9)
    threads: int = Field(gt=0, default=2)

    @model_validator(mode="after")
    def _splits(self) -> TrainConfig:
        if self.folds <= 1 and self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError("validation_fraction + test_fraction leave too little to train on")
        if self.folds > 1 and not self.test_fold < self.folds:
            raise ValueError(f"test_fold {self.test_fold} is not one of the {self.folds} folds")
        return self


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = (
            _merge(merged[key], value)
            if isinstance(value, dict) and isinstance(merged.get(key), dict)
            else value
        )
    return merged


def load_config(path: Path, *overlays: Path) -> TrainConfig:
    """Read a base config and apply each overlay on top, in order."""
    values: dict[str, Any] = {}
    for file in (path, *overlays):
        loaded = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{file} must hold a mapping of settings")
        values = _merge(values, loaded)
    return TrainConfig.model_validate(values)
