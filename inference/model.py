"""Model cards and weights: load once per worker process, check them, run them on GPU or CPU.

A model lives in a folder holding ``card.json`` (the model card) and the weights file it names,
whose SHA-256 the card records. Nothing is downloaded: the bundled demo models ship in
``models/``; trained ones are registered in MLflow and fetched by ``inference/registry.py``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from inference.breast import check_cut_points
from inference.fracture import Thresholds
from inference.networks import ARCHITECTURES

logger = logging.getLogger(__name__)


class ModelUnavailable(Exception):
    """No usable model for a pipeline (missing, corrupt, or failing its card); studies go conservative."""


class DatasetCredit(BaseModel):
    """One data source a model was trained or evaluated on, with what its licence requires."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    licence: str
    attribution: str
    changes: str
    synthetic: bool = False


class Metric(BaseModel):
    """A figure on held-out data with its 95 % confidence interval."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float
    ci95_low: float
    ci95_high: float
    n: int


class ModelCard(BaseModel):
    """What a model is, what it was trained on, how well it does, and the operating points it uses."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    name: str
    version: str
    pipeline: Literal["fracture", "breast"]
    architecture: str
    input_size: int = Field(gt=0)
    intended_use: str
    data: tuple[DatasetCredit, ...]
    preprocessing: str
    held_out: str
    metrics: dict[str, Metric]
    fracture_threshold: float | None = None
    doubt_threshold: float | None = None
    decile_cut_points: tuple[float, ...] | None = None
    weights_file: str = "weights.pt"
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    reproduce: str
    created: str

    @model_validator(mode="after")
    def _operating_points(self) -> ModelCard:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; known: {sorted(ARCHITECTURES)}")
        if self.pipeline == "fracture":
            if self.fracture_threshold is None or self.doubt_threshold is None:
                raise ValueError("a fracture model card needs fracture_threshold and doubt_threshold")
            self.thresholds  # noqa: B018 - validates their order
        if self.pipeline == "breast":
            if self.decile_cut_points is None:
                raise ValueError("a breast model card needs nine decile_cut_points")
            check_cut_points(self.decile_cut_points)
        return self

    @property
    def thresholds(self) -> Thresholds:
        assert self.fracture_threshold is not None and self.doubt_threshold is not None
        return Thresholds(fracture=self.fracture_threshold, doubt=self.doubt_threshold)

    @classmethod
    def read(cls, folder: Path) -> ModelCard:
        return cls.model_validate_json((folder / "card.json").read_text(encoding="utf-8"))

    def write(self, folder: Path) -> None:
        (folder / "card.json").write_text(
            json.dumps(self.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pick_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@dataclass
class LoadedModel:
    """A checked model card and its network, in eval mode on ``device``."""

    card: ModelCard
    network: torch.nn.Module
    device: torch.device

    def autocast(self) -> torch.autocast:
        """Mixed precision on GPU; plain float32 on CPU."""
        return torch.autocast(
            device_type=self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"
        )


def load_model(folder: Path, device: torch.device) -> LoadedModel:
    """Read a model folder, verify its weights against the card's SHA-256, and build the network.

    Raises:
        ModelUnavailable: the folder, card or weights are missing or do not match.
    """
    try:
        card = ModelCard.read(folder)
    except (OSError, ValueError) as error:
        raise ModelUnavailable(f"no valid model card in {folder}: {error}") from error
    weights = folder / card.weights_file
    if not weights.is_file():
        raise ModelUnavailable(f"the weights file {weights} is missing")
    actual = sha256_file(weights)
    if actual != card.weights_sha256:
        raise ModelUnavailable(f"{weights} has SHA-256 {actual}, the model card says {card.weights_sha256}")
    network = ARCHITECTURES[card.architecture]()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    network.load_state_dict({key: value.float() for key, value in state.items()})
    network.eval().to(device)
    logger.info("loaded %s %s (%s) on %s", card.name, card.version, card.pipeline, device)
    return LoadedModel(card, network, device)
