"""Evaluate and calibrate the bundled screening model on phantom four-view screens read from DICOM:
1-10 score shares, the workload sweep, lesion boxes, and new decile cut-points in a new card."""

import numpy as np
import pytest

from evaluation.calibrate import calibrate
from evaluation.evaluate import figures, predict
from evaluation.findings import EvaluationReport
from inference.model import load_model
from testkit import phantoms
from testkit.peers import REPO
from triage.cards import Evidence, read_card
from triage.header_facts import HeaderFacts
from triage.manifests import Sample, read_manifest, write_manifest


@pytest.fixture(scope="module")
def screens(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screens")
    samples = []
    for woman in range(20):
        lesion = "L" if woman % 2 == 0 else None
        for ds in phantoms.screen(lesion, seed=woman, size=256):
            path = folder / f"{woman}-{ds.ImageLaterality}-{ds.ViewPosition}.dcm"
            ds.save_as(path, enforce_file_format=True)
            samples.append(
                Sample(
                    label=int(lesion == ds.ImageLaterality),
                    group=f"woman{woman}",
                    meta=HeaderFacts(modality="MG", laterality=ds.ImageLaterality, view=ds.ViewPosition),
                    path=path,
                    exam=f"exam{woman}",
                    split="test" if woman >= 12 else "",
                    subgroups={"device": "vendor-a" if woman % 4 < 2 else "vendor-b"},
                )
            )
    manifest = folder / "manifest.csv"
    write_manifest(samples, manifest)
    return manifest


def test_screening_figures_and_calibration(screens, tmp_path):
    model = load_model(REPO / "models" / "breast", __import__("torch").device("cpu"))
    samples = read_manifest(screens, "MG")
    predictions = predict(model, samples)
    assert len(predictions.images) == 80 and all(0 <= p.probability <= 1 for p in predictions.images)
    assert predictions.skipped == []
    found = figures(model.card, predictions, screens, single_read_max_score=5, resamples=200)
    assert found.dataset.exams == 20 and found.dataset.positive_exams == 10
    assert sum(found.scores[s].n for s in range(1, 11)) == 20
    assert [w.single_read_max_score for w in found.workload] == list(range(11))
    assert found.workload[0].reads_per_1000_exams == 2000
    assert set(found.subgroups["device"]) == {"vendor-a", "vendor-b"}
    assert set(found.operating_points) == {"double_reading"}
    assert found.boxes is None, "the phantom screens carry no lesion boxes"
    written = tmp_path / "report.json"
    found.write_json(written)
    assert EvaluationReport.read_json(written) == found, "report.json reads back as the same report"
    evidence = Evidence.model_validate_json(found.evidence.model_dump_json())  # a card's block, as it is
    assert [e.single_read_max_score for e in evidence.single_read] == list(range(1, 10))
    assert evidence.single_read[4].cancers_single_read.n == 10

    card = calibrate(model, REPO / "models" / "breast", samples, screens, tmp_path / "cal", "1.0.0+phantom")
    assert len(card.decile_cut_points) == 9 and list(card.decile_cut_points) == sorted(card.decile_cut_points)
    assert card.metrics["exam_auroc"].n == 8  # measured on the test-split women only
    assert read_card(tmp_path / "cal").version == "1.0.0+phantom"
    assert load_model(tmp_path / "cal", model.device).card.weights_sha256 == model.card.weights_sha256
    assert np.isfinite(card.metrics["exam_auroc"].value)
    # the single-reading evidence, measured on the held-out women at every threshold
    at = {e.single_read_max_score: e for e in card.evidence.single_read}
    assert sorted(at) == list(range(1, 10)) and all(e.cancers_single_read.n == 4 for e in at.values())
    assert at[1].screens_single_read.value <= at[9].screens_single_read.value
    assert "triage calibrate on" in at[5].source


def test_a_damaged_image_is_skipped_with_its_reason_and_counted(screens, tmp_path):
    """A hospital archive holds damaged files: one must never stop an evaluation."""
    from PIL import Image

    model = load_model(REPO / "models" / "breast", __import__("torch").device("cpu"))
    samples = read_manifest(screens, "MG")[:8]
    damaged = tmp_path / "damaged.png"
    Image.new("L", (256, 256), 128).save(damaged)
    damaged.write_bytes(damaged.read_bytes()[:200])  # truncated, as FracAtlas ships some JPEGs
    samples.append(Sample(label=1, group="w", meta=samples[0].meta, path=damaged, exam="x"))
    predictions = predict(model, samples)
    assert len(predictions.images) == 8
    [reason] = predictions.skipped
    assert str(damaged) in reason and "OSError" in reason
    found = figures(model.card, predictions, screens, resamples=50)
    assert found.dataset.skipped_images == 1 and found.dataset.images == 8
    assert found.dataset.skipped == [reason]
