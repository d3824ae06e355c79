"""Model cards, weight checks, and the bundled models against their own cards' held-out figures."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from inference.model import ModelUnavailable, load_model
from testkit.peers import REPO
from training.config import load_config
from training.figures import exams
from training.train import load_data, score, split
from triage.cards import parse_card, read_card

MODELS = REPO / "models"
FOLDERS = {"fracatlas": "fracatlas_dev", "mini_mias_abnormal": "mini_mias", "mini_mias": "mini_mias"}
DATASETS = Path(os.environ.get("TRIAGE_DATASETS", REPO.parent / "shared" / "datasets"))


def card_values(pipeline):
    return json.loads((MODELS / pipeline / "card.json").read_text())


def test_a_fracture_card_without_operating_points_is_refused():
    values = card_values("fracture")
    del values["doubt_threshold"]
    with pytest.raises(ValidationError, match="doubt_threshold"):
        parse_card(values)


def test_a_breast_card_without_nine_cut_points_is_refused():
    values = card_values("breast")
    values["decile_cut_points"] = values["decile_cut_points"][:5]
    with pytest.raises(ValidationError, match="nine"):
        parse_card(values)


def test_weights_that_do_not_match_the_card_are_refused(tmp_path):
    shutil.copytree(MODELS / "fracture", tmp_path / "fracture")
    weights = tmp_path / "fracture" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="SHA-256"):
        load_model(tmp_path / "fracture", torch.device("cpu"))


def test_a_missing_model_is_unavailable(tmp_path):
    with pytest.raises(ModelUnavailable, match="no valid model card"):
        load_model(tmp_path, torch.device("cpu"))


@pytest.mark.parametrize("pipeline", ["fracture", "breast"])
def test_bundled_model_cards_say_what_a_user_must_know(pipeline):
    card = read_card(MODELS / pipeline)
    assert "NOT FOR CLINICAL USE" in card.intended_use.statement
    assert all(credit.attribution and credit.licence for credit in card.data)
    assert all(m.ci95_low <= m.value <= m.ci95_high for m in card.metrics.values())
    if pipeline == "breast":
        assert any(credit.synthetic for credit in card.data), "synthetic views are declared"
    assert sum(p.stat().st_size for p in MODELS.rglob("weights.pt")) < 50 * 2**20


@pytest.mark.parametrize(("pipeline", "metric"), [("fracture", "auroc"), ("breast", "exam_auroc")])
def test_bundled_model_reproduces_its_held_out_figures(pipeline, metric, onnx_cache):
    """A preprocessing or weights change that moves the bundled model's accuracy fails here; the
    network is run as the worker serves it on the CPU (ONNX Runtime)."""
    from evaluation.metrics import auroc

    model = load_model(MODELS / pipeline, torch.device("cpu"), onnx_cache)
    assert model.runner is not None
    config = load_config(REPO / "configs" / "train" / f"{pipeline}.yaml")
    folder = DATASETS / FOLDERS[config.dataset]
    assert folder.is_dir(), f"the {config.dataset} data set is expected at {folder}"
    _, _, test = split(config, load_data(config, folder).samples)
    torch.set_num_threads(2)
    scored = score(model.runner, config, test)
    labels, scores = [s.label for s in scored], [s.probability for s in scored]
    if pipeline == "breast":
        labels, scores = exams(scored)
    assert len(labels) == model.card.metrics[metric].n
    assert auroc(labels, scores) == pytest.approx(model.card.metrics[metric].value, abs=0.005)
