"""A trained network -> a model folder: half-precision weights, their SHA-256, and the model card."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

from triage.cards import CARD, DEFAULT_INTENDED_USE, DatasetCredit, IntendedUse, ModelCard
from triage.pipelines import Pipeline
from triage.records.storage import sha256_of

FRACATLAS = DatasetCredit(
    name="FracAtlas (development subset of 500 radiographs)",
    licence="CC BY 4.0, https://creativecommons.org/licenses/by/4.0/",
    attribution=(
        "Abedeen I, Rahman MA, Prottyasha FZ, Ahmed T, Chowdhury TM, Shatabda S. FracAtlas: A Dataset for "
        "Fracture Classification, Localization and Segmentation of Musculoskeletal Radiographs. "
        "Scientific Data 10, 521 (2023). doi:10.1038/s41597-023-02432-4"
    ),
    changes="subset of 500 images; 37 downscaled to 1024 px and saved as 8-bit PNG; labels reformatted",
)


def fracatlas_credit(folder: Path, images: int) -> DatasetCredit:
    """FracAtlas as this copy of it is: the pool's size counted, the changes its README declares (the
    500-image subset and the full development pool were changed differently)."""
    changes = FRACATLAS.changes
    readme = folder / "README.md"
    if readme.is_file():
        found = re.search(r"\*\*Changes made[^*]*\*\*\s*(.+?)(?:\n\s*\n|$)", readme.read_text("utf-8"), re.S)
        if found:
            changes = " ".join(found.group(1).split())
    return FRACATLAS.model_copy(
        update={"name": f"FracAtlas ({folder.name}: {images} radiographs)", "changes": changes}
    )


MINI_MIAS = DatasetCredit(
    name="mini-MIAS (development subset: 81 women, 162 MLO views)",
    licence="CC BY 2.0 UK per the Apollo deposit; the archive's licence allows research use only, no sale",
    attribution=(
        "Suckling J et al. (1994) The Mammographic Image Analysis Society Digital Mammogram Database, "
        "Excerpta Medica ICS 1069, 375-378; Suckling J et al. (2015) MIAS database v1.21, Apollo, "
        "University of Cambridge Repository, doi:10.17863/CAM.105113"
    ),
    changes="subset of 81 women; PGM converted losslessly to PNG; centre/radius converted to boxes",
)
SYNTHETIC_CC = DatasetCredit(
    name="synthetic CC views",
    licence="n/a (made by this project)",
    attribution="triage",
    changes=(
        "mini-MIAS has no CC views, so each four-view reference exam reuses the breast's MLO image as its "
        "CC view; exam probabilities are therefore the larger of the two MLO probabilities"
    ),
    synthetic=True,
)
PREPROCESSING = (
    "inference/transforms.py: Modality LUT, VOI LUT or window (else 0.5-99.5 percentile), MONOCHROME1 "
    "inverted, pixels made square in mm, long side resized (antialiased) to the input size and padded, "
    "mammograms mirrored to put the chest wall on the left; 1 channel 0-1, normalised inside the network"
)
INTENDED_USE = (
    "Demonstration of the triage service only; NOT FOR CLINICAL USE. Trained and evaluated on small public "
    "research sets whose case mix, equipment and prevalence differ from any clinic's."
)


ADULTS = (
    " Adults only (18 and over): FracAtlas publishes no ages, and children's fractures (growth plates,"
    " greenstick and buckle fractures) are not what it learnt; a study whose age cannot be read is not"
    " analysed."
)


def intended_use(pipeline: Pipeline) -> IntendedUse:
    """The intended use a newly trained model's card states, in words and as the gate's rules."""
    statement = INTENDED_USE + (ADULTS if pipeline == Pipeline.FRACTURE else "")
    return IntendedUse.model_validate({"statement": statement, **DEFAULT_INTENDED_USE[pipeline]})


def save_weights(network: nn.Module, path: Path) -> str:
    """Save the state dict with floating tensors in half precision; return its SHA-256."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in network.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return sha256_of(path)


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def write_model(folder: Path, network: nn.Module, **card_fields: object) -> ModelCard:
    """Write weights and card into ``folder``; the card is validated before anything is kept."""
    sha256 = save_weights(network, folder / "weights.pt")
    card = CARD.validate_python({**card_fields, "weights_file": "weights.pt", "weights_sha256": sha256})
    card.write(folder)
    return card
