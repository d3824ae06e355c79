"""Model cards and weights: load once per worker process, check them, run them on GPU or CPU.

A model lives in a folder holding ``card.json`` (the model card, ``triage.cards``) and the weights
file it names, whose SHA-256 the card records. Nothing is downloaded: the bundled demo models ship in
``models/``; trained ones are registered in MLflow and fetched by ``inference/registry.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import ValidationError

from inference.networks import ARCHITECTURES
from inference.onnx_runtime import ImportedRunner, OnnxRunner, exported
from inference.predict import ImageResult, run
from inference.transforms import Prepared
from triage.cards import IMPORTED_ONNX, ModelCard, read_card
from triage.outcomes import ModelIdentity
from triage.records.storage import sha256_of

logger = logging.getLogger(__name__)


class ModelUnavailable(Exception):
    """No usable model for a pipeline (missing, corrupt, or failing its card); studies go conservative."""


def pick_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@dataclass
class LoadedModel:
    """A checked model card and its network, in eval mode on ``device``; ``runner`` runs it instead
    where it is served through ONNX Runtime (the CPU)."""

    card: ModelCard
    network: torch.nn.Module | None  # None: an imported ONNX network, which only ``runner`` runs
    device: torch.device
    runner: Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]] | None = None

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(self.card.name, self.card.version, self.card.weights_sha256)

    def predict(self, inputs: Sequence[Prepared]) -> list[ImageResult]:
        """Each prepared image's probability and detections, as the card says to run the network."""
        network = self.runner or self.network
        assert network is not None
        return run(network, self.card.architecture, inputs, self.device, self.card.test_time_flip)


def load_model(folder: Path, device: torch.device, onnx_cache: Path | None = None) -> LoadedModel:
    """Read a model folder, verify its weights against the card's SHA-256, and build the network;
    on the CPU with ``onnx_cache``, served through ONNX Runtime from an export cached there.

    Raises:
        ModelUnavailable: the folder, card or weights are missing or do not match.
    """
    try:
        card = read_card(folder)
    except (OSError, ValueError, ValidationError) as error:
        raise ModelUnavailable(f"no valid model card in {folder}: {error}") from error
    if card.architecture not in ARCHITECTURES and card.architecture != IMPORTED_ONNX:
        raise ModelUnavailable(
            f"{folder}: unknown architecture {card.architecture!r}; known: {sorted(ARCHITECTURES)} "
            f"and {IMPORTED_ONNX!r} (an imported network)"
        )
    weights = folder / card.weights_file
    if not weights.is_file():
        raise ModelUnavailable(f"the weights file {weights} is missing")
    actual = sha256_of(weights)
    if actual != card.weights_sha256:
        raise ModelUnavailable(f"{weights} has SHA-256 {actual}, the model card says {card.weights_sha256}")
    if card.onnx is not None:
        try:
            imported = ImportedRunner(weights, card.onnx, torch.get_num_threads())
        except (RuntimeError, ValueError) as error:  # onnxruntime's load errors are RuntimeErrors
            raise ModelUnavailable(f"{weights} is not a network ONNX Runtime can run: {error}") from error
        logger.info("loaded %s %s (%s), imported ONNX, ONNX Runtime", card.name, card.version, card.pipeline)
        return LoadedModel(card, None, device, imported)
    network = ARCHITECTURES[card.architecture]()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    network.load_state_dict({key: value.float() for key, value in state.items()})
    network.eval().to(device)
    runner = None
    if device.type == "cpu" and onnx_cache is not None:
        runner = OnnxRunner(exported(network, card, onnx_cache), torch.get_num_threads())
    serving = "ONNX Runtime" if runner is not None else "torch"
    logger.info("loaded %s %s (%s) on %s, %s", card.name, card.version, card.pipeline, device, serving)
    return LoadedModel(card, network, device, runner)
