"""`triage models import`: a site's own network (an ONNX file, or a state dict of an architecture
triage knows) with the card its supplier wrote, checked against its published hash, calibrated and
measured on the site's labelled manifest, and written as a model folder ready to register.

The supplier's card says what the network is and takes (``triage.cards.OnnxContract`` for ONNX);
triage decides its operating points, its 1-10 cut-points and the evidence its decisions need on the
site's own exams (``evaluation.calibrate``), never from the supplier's claims: an imported model
starts with no decision enabled that the site's data do not support.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from evaluation.calibrate import calibrate
from inference.model import ModelUnavailable, load_model
from inference.networks import ARCHITECTURES
from triage.cards import IMPORTED_ONNX, ModelCard, parse_card
from triage.manifests import Sample
from triage.pipelines import Pipeline
from triage.records.storage import sha256_of

# Placeholders until calibration replaces them (never served: the folder they are in is temporary).
_UNCALIBRATED: dict[Pipeline, dict[str, Any]] = {
    Pipeline.FRACTURE: {"doubt_threshold": 0.0, "fracture_threshold": 1.0},
    Pipeline.BREAST: {"decile_cut_points": [round(0.1 * k, 1) for k in range(1, 10)]},
}


class ImportRefused(ValueError):
    """The network or its card cannot be imported; the message says why."""


def supplied_card(network_file: Path, card_file: Path) -> dict[str, Any]:
    """The supplier's card, checked against the network file: its hash, its format, its contract.

    Raises:
        ImportRefused: the hash differs, the architecture does not fit the file, or the card is
            incomplete (the message names the field).
    """
    try:
        values = json.loads(card_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ImportRefused(f"cannot read the card {card_file}: {error}") from error
    if not isinstance(values, dict):
        raise ImportRefused(f"the card {card_file} is not a JSON object")
    actual = sha256_of(network_file)
    if values.get("weights_sha256") != actual:
        raise ImportRefused(
            f"{network_file.name} has SHA-256 {actual}, the card says {values.get('weights_sha256')!r}: "
            "not the network its supplier published"
        )
    onnx = network_file.suffix.lower() == ".onnx"
    architecture = values.get("architecture")
    if onnx and architecture != IMPORTED_ONNX:
        raise ImportRefused(
            f'an ONNX file is imported with the architecture "{IMPORTED_ONNX}", not {architecture!r}'
        )
    if not onnx and architecture not in ARCHITECTURES:
        raise ImportRefused(
            f"a state dict must be of an architecture triage knows ({sorted(ARCHITECTURES)}), "
            f"not {architecture!r}"
        )
    return values


def import_model(
    network_file: Path,
    card_file: Path,
    samples: Sequence[Sample],
    manifest: Path,
    out: Path,
    target_sensitivity: float = 0.9,
    target_specificity: float = 0.9,
) -> ModelCard:
    """Check, calibrate on ``samples`` and write the model into ``out``; returns its card.

    Raises:
        ImportRefused: the network or its card cannot be imported, or the manifest cannot calibrate it.
    """
    values = supplied_card(network_file, card_file)
    pipeline = values.get("pipeline")
    if pipeline not in set(Pipeline):
        raise ImportRefused(
            f"the card's pipeline must be one of {[str(p) for p in Pipeline]}, not {pipeline!r}"
        )
    staging = out.with_name(f".{out.name}.importing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        card = _provisional(values, Pipeline(pipeline), network_file)
        shutil.copy2(network_file, staging / card.weights_file)
        card.write(staging)
        try:
            model = load_model(staging, torch.device("cpu"))
            calibrated = calibrate(
                model, staging, samples, manifest, out, card.version, target_sensitivity, target_specificity
            )
        except (ModelUnavailable, ValueError) as error:
            raise ImportRefused(str(error)) from error
        reproduce = f"{card.reproduce} --card {card_file.name} --manifest {manifest.name}"
        calibrated = calibrated.model_copy(update={"reproduce": reproduce})
        calibrated.write(out)
        return calibrated
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _provisional(values: dict[str, Any], pipeline: Pipeline, network_file: Path) -> ModelCard:
    """The supplier's card with what triage measures left to calibration."""
    supplied = {
        key: value for key, value in values.items() if key not in ("metrics", "evidence", "cross_validated")
    }
    try:
        return parse_card(
            {
                "held_out": "not yet measured",
                "data": [],
                **supplied,
                **_UNCALIBRATED[pipeline],
                "metrics": {},
                "weights_file": network_file.name,
                "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
                "reproduce": f"triage models import {network_file.name} (SHA-256 {values['weights_sha256']})",
            }
        )
    except ValidationError as error:
        raise ImportRefused(f"the card is incomplete or invalid: {error}") from error
