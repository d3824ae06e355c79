"""`triage models import`: a site's own ONNX network, made here (synthetic: it scores an image by its
brightness, nothing clinical), checked against its hash, calibrated and measured on a site manifest,
registered unpromoted, and served through its card's input contract."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import select

from evaluation.findings import EvaluationReport
from evaluation.imported import ImportRefused, import_model
from inference import registry
from inference.model import load_model
from inference.transforms import prepare
from testkit.peers import REPO, triage_env
from triage.cards import IMPORTED_ONNX, read_card
from triage.header_facts import HeaderFacts
from triage.manifests import Sample, read_manifest, write_manifest
from triage.records.storage import sha256_of
from triage.records.tables import AuditEvent

MEAN, STD, SIZE = 0.5, 0.25, 64


class Brightness(torch.nn.Module):
    """Synthetic: the probability rises with the mean of the normalised three-channel input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(8.0 * (x.mean(dim=(1, 2, 3)) + 1.8))[:, None]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The synthetic network (a fixed batch of one), its supplier's card, and a site manifest of 80
    radiographs, half with a bright square."""
    folder = tmp_path_factory.mktemp("site")
    network = folder / "brightness.onnx"
    torch.onnx.export(
        Brightness(), (torch.zeros(1, 3, SIZE, SIZE),), str(network), input_names=["image"], dynamo=False
    )
    rng = np.random.default_rng(3)
    samples = []
    for patient in range(80):
        pixels = rng.integers(20, 60, (96, 80)).astype(np.uint8)
        if patient % 2:
            pixels[30:70, 20:60] = 230
        path = folder / f"{patient}.png"
        Image.fromarray(pixels).save(path)
        samples.append(
            Sample(
                label=patient % 2,
                group=f"patient{patient}",
                meta=HeaderFacts(modality="DX"),
                path=path,
                split="test" if patient >= 40 else "",
            )
        )
    manifest = folder / "manifest.csv"
    write_manifest(samples, manifest)
    card = {
        "name": "synthetic-brightness",
        "version": "1.0.0+synthetic",
        "pipeline": "fracture",
        "architecture": IMPORTED_ONNX,
        "input_size": SIZE,
        "onnx": {"channels": 3, "mean": MEAN, "std": STD, "output": "probability"},
        "intended_use": {
            "statement": "synthetic test network: scores brightness, never a patient",
            "modalities": ["DX"],
            "sop_classes": ["DigitalXRayImageStorageForPresentation"],
        },
        "data": [
            {"name": "synthetic", "licence": "-", "attribution": "-", "changes": "-", "synthetic": True}
        ],
        "preprocessing": "triage's own, then (x - 0.5) / 0.25 on three channels",
        "weights_sha256": sha256_of(network),
    }
    card_file = folder / "card.json"
    card_file.write_text(json.dumps(card), encoding="utf-8")
    return network, card_file, manifest


def test_an_imported_network_is_calibrated_on_the_site_and_served_through_its_contract(site, tmp_path):
    network, card_file, manifest = site
    samples = read_manifest(manifest, "DX")
    card = import_model(
        network,
        card_file,
        samples,
        manifest,
        tmp_path / "model",
        target_sensitivity=0.8,
        target_specificity=0.8,
    )
    assert card.architecture == IMPORTED_ONNX and card.weights_sha256 == sha256_of(network)
    assert read_card(tmp_path / "model") == card and (tmp_path / "model" / "brightness.onnx").is_file()
    assert 0.0 < card.doubt_threshold <= card.fracture_threshold < 1.0, "chosen on the site's exams"
    assert card.metrics["exam_auroc"].value == 1.0 and card.metrics["exam_auroc"].n == 40
    rule_out = card.evidence.rule_out
    assert rule_out is not None and rule_out.sensitivity_at_doubt.n == 20, (
        "measured on the 20 held-out positives"
    )
    assert "triage models import brightness.onnx" in card.reproduce

    loaded = load_model(tmp_path / "model", torch.device("cpu"))
    assert loaded.network is None and loaded.runner is not None
    image = np.asarray(Image.open(samples[1].path), dtype=np.float32) / 255
    prepared = prepare(image, samples[1].meta, SIZE)
    [result] = loaded.predict([prepared])
    expected = torch.sigmoid(8.0 * (((prepared.pixels - MEAN) / STD).mean() + 1.8))
    assert result.probability == pytest.approx(float(expected), abs=1e-5), "normalised as the card says"
    assert result.detections == ()


def test_a_network_whose_hash_differs_from_its_card_is_refused(site, tmp_path):
    network, card_file, manifest = site
    other = tmp_path / "brightness.onnx"
    other.write_bytes(network.read_bytes() + b"\0")
    with pytest.raises(ImportRefused, match="not the network its supplier published"):
        import_model(other, card_file, read_manifest(manifest, "DX"), manifest, tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_an_onnx_card_without_its_contract_is_refused(site, tmp_path):
    network, card_file, manifest = site
    values = json.loads(card_file.read_text())
    del values["onnx"]
    broken = tmp_path / "card.json"
    broken.write_text(json.dumps(values))
    with pytest.raises(ImportRefused, match='"onnx" contract'):
        import_model(network, broken, read_manifest(manifest, "DX"), manifest, tmp_path / "model")
    values["architecture"] = "fracture-lite0"
    broken.write_text(json.dumps(values))
    with pytest.raises(ImportRefused, match="an ONNX file is imported with the architecture"):
        import_model(network, broken, read_manifest(manifest, "DX"), manifest, tmp_path / "model")


def import_command(settings, network, card_file, manifest, out):
    targets = ["--target-sensitivity", "0.8", "--target-specificity", "0.8"]
    command = ["models", "import", str(network), "--card", str(card_file), "--manifest", str(manifest)]
    return subprocess.run(
        [sys.executable, "-m", "triage", *command, "--out", str(out), *targets],
        env=triage_env(settings), cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_import_command_registers_it_unpromoted_with_its_evaluation(site, settings, database, tmp_path):
    network, card_file, manifest = site
    out = tmp_path / "model"
    done = import_command(settings, network, card_file, manifest, out)
    assert done.returncode == 0, done.stderr
    assert "(not promoted)" in done.stderr
    report = EvaluationReport.read_json(out / "evaluation" / "report.json")
    assert report.dataset.exams == 40, "measured on the held-out exams only"
    assert report.exam_auroc is not None and report.exam_auroc.value == 1.0
    [version] = [v for v in registry.versions(settings) if v.card_name == "synthetic-brightness"]
    assert version.aliases == (), "registered, not promoted: production still runs what it ran"
    with database.session() as session:
        [detail] = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "model.imported")
        ).all()
    assert detail == "synthetic-brightness 1.0.0+synthetic imported from brightness.onnx"


def test_a_state_dict_of_a_known_architecture_is_imported_the_same_way(site, tmp_path):
    from inference.networks import ARCHITECTURES

    _, card_file, manifest = site
    torch.manual_seed(0)
    weights = tmp_path / "classifier.pt"
    torch.save(ARCHITECTURES["classifier-lite0"]().state_dict(), weights)
    values = {**json.loads(card_file.read_text()), "architecture": "classifier-lite0", "onnx": None}
    values = {key: value for key, value in values.items() if value is not None}
    supplied = tmp_path / "card.json"
    supplied.write_text(json.dumps({**values, "weights_sha256": sha256_of(weights)}))
    samples = read_manifest(manifest, "DX")
    card = import_model(
        weights,
        supplied,
        samples,
        manifest,
        tmp_path / "model",
        target_sensitivity=0.8,
        target_specificity=0.8,
    )
    assert card.architecture == "classifier-lite0" and card.onnx is None
    loaded = load_model(tmp_path / "model", torch.device("cpu"))
    assert loaded.network is not None and loaded.card.weights_sha256 == sha256_of(weights)
