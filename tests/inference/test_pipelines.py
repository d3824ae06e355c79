"""Both pipelines end to end on phantom DICOM studies in storage, with phantom-trained networks."""

import pytest
import torch

from inference.breast import BreastPipeline
from inference.fracture import FracturePipeline
from inference.inputs import read_study
from inference.model import LoadedModel
from inference.networks import CentrePointDetector, ViewClassifier
from testkit import phantoms
from testkit.synthetic import store, stored_study, synthetic_evidence
from tests.training.test_phantom_training import config, phantom_samples
from training.loop import train_network
from triage.cards import Evidence, parse_card
from triage.outcomes import Analysed, Decision, Skipped

CARD = {
    "version": "0-phantom",
    "input_size": 128,
    "intended_use": "tests",
    "data": [],
    "preprocessing": "same",
    "held_out": "none",
    "metrics": {},
    "weights_sha256": "0" * 64,
    "reproduce": "tests",
    "created": "now",
}


DECILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def phantom_model(network, make, modality, **card):
    """A network trained for 40 steps on phantoms, wrapped with a phantom model card."""
    pipeline = "fracture" if make is phantoms.radiograph else "breast"
    cfg = config(pipeline, card["architecture"])
    trained = train_network(network, phantom_samples(make, 48, 1, modality), cfg, max_steps=40)
    evidence = synthetic_evidence(card.get("doubt_threshold", 0.0))  # the gate's decisions on
    values = {**CARD, "pipeline": pipeline, "evidence": evidence, **card}
    return LoadedModel(parse_card(values), trained, torch.device("cpu"))


@pytest.fixture(scope="module")
def detector():
    return phantom_model(
        CentrePointDetector(pretrained=True), phantoms.radiograph, "DX", name="phantom-fracture",
        architecture="centrepoint-lite0", fracture_threshold=0.5, doubt_threshold=0.2,
    )  # fmt: skip


@pytest.fixture(scope="module")
def classifier():
    return phantom_model(
        ViewClassifier(pretrained=True), phantoms.mammogram, "MG", name="phantom-breast",
        architecture="classifier-lite0", decile_cut_points=DECILES,
    )  # fmt: skip


@pytest.fixture(scope="module")
def lesion_detector():
    return phantom_model(
        CentrePointDetector(pretrained=True), phantoms.mammogram, "MG", name="phantom-lesions",
        architecture="centrepoint-lite0", decile_cut_points=DECILES,
    )  # fmt: skip


def test_fractured_phantom_study_is_flagged_with_a_box_on_the_source_image(detector, tmp_path):
    datasets = phantoms.trauma_study(fractured=True, seed=5, size=256, images=3)
    result = FracturePipeline(detector)(*stored_study(datasets, tmp_path, "fracture"))
    assert isinstance(result, Analysed)
    assert result.outcome.state in {"FRACTURE", "DOUBT"} and not result.outcome.eligible_for_discharge
    assert result.model.name == "phantom-fracture" and result.model.version == "0-phantom"
    first = result.outcome.images[0]
    assert first.sop_instance_uid == datasets[0].SOPInstanceUID and first.boxes
    x0, y0, x1, y1 = first.boxes[0].corners
    assert 0 <= x0 < x1 <= 256 and 0 <= y0 < y1 <= 256, "boxes are in the source image's pixels"
    assert [i["sop_instance_uid"] for i in result.inputs] == [ds.SOPInstanceUID for ds in datasets]


def test_intact_phantom_study_is_no_fracture_and_eligible_for_discharge(detector, tmp_path):
    result = FracturePipeline(detector)(
        *stored_study(phantoms.trauma_study(False, seed=6, images=2), tmp_path, "fracture")
    )
    assert isinstance(result, Analysed)
    assert result.outcome.state == "NO_FRACTURE" and result.outcome.eligible_for_discharge


def test_one_unreadable_image_makes_the_whole_study_conservative(detector, tmp_path):
    datasets = phantoms.trauma_study(False, seed=7, images=2)
    datasets[1].PixelData = datasets[1].PixelData[:10]
    result = FracturePipeline(detector)(*stored_study(datasets, tmp_path, "fracture"))
    assert isinstance(result, Skipped) and "cannot be decoded" in result.reason
    assert result.model is not None


def test_a_file_changed_after_receipt_is_not_analysed(detector, tmp_path):
    payload = store(phantoms.trauma_study(False, seed=8), tmp_path, "fracture")
    (tmp_path / payload.instances[0].storage_key).write_bytes(b"changed")
    result = FracturePipeline(detector)(payload, read_study(payload, tmp_path))
    assert isinstance(result, Skipped) and "changed on disk" in result.reason


def test_screens_with_and_without_a_lesion_are_scored_apart(classifier, tmp_path):
    pipeline = BreastPipeline(classifier, single_read_max_score=5)
    with_lesion = pipeline(*stored_study(phantoms.screen("L", seed=3, size=128), tmp_path, "breast"))
    without = pipeline(*stored_study(phantoms.screen(None, seed=4, size=128), tmp_path, "breast"))
    assert isinstance(with_lesion, Analysed) and isinstance(without, Analysed)
    assert with_lesion.outcome.probability > without.outcome.probability
    assert with_lesion.outcome.per_breast["L"] > with_lesion.outcome.per_breast["R"]
    assert {v.view for v in with_lesion.outcome.per_view} == {"CC", "MLO"}
    assert 1 <= without.outcome.score <= 10 and without.outcome.route in {"SINGLE_READ", "DOUBLE_READ"}


def test_breast_model_failure_is_double_reading_without_a_score(classifier, tmp_path):
    class Broken(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0],), float("nan"))

    broken = LoadedModel(classifier.card, Broken(), torch.device("cpu"))
    result = BreastPipeline(broken, 5)(
        *stored_study(phantoms.screen(None, seed=9, size=128), tmp_path, "breast")
    )
    assert isinstance(result, Skipped)
    assert result.outcome.route == "DOUBLE_READ" and result.outcome.score is None
    assert "invalid model output" in result.reason


def test_a_lesion_detector_scores_the_screen_and_marks_the_lesion(lesion_detector, tmp_path):
    pipeline = BreastPipeline(lesion_detector, single_read_max_score=5)
    with_lesion = pipeline(*stored_study(phantoms.screen("R", seed=13, size=128), tmp_path, "breast"))
    without = pipeline(*stored_study(phantoms.screen(None, seed=14, size=128), tmp_path, "breast"))
    assert isinstance(with_lesion, Analysed) and isinstance(without, Analysed)
    assert with_lesion.outcome.probability > without.outcome.probability
    right = [v for v in with_lesion.outcome.per_view if v.laterality == "R"]
    assert all(v.lesions for v in right), "the lesion is marked on both right views"
    x0, _, x1, _ = right[0].lesions[0].corners
    assert 0 <= x0 < x1 <= 128, "marks are on the source image, mirrored back"


def without_evidence(model):
    """The same network under a card that carries no validation evidence."""
    return LoadedModel(model.card.model_copy(update={"evidence": Evidence()}), model.network, model.device)


def test_without_rule_out_evidence_no_fracture_reads_as_usual_and_boxes_are_hidden(detector, tmp_path):
    intact = phantoms.trauma_study(False, seed=6, images=2)
    result = FracturePipeline(without_evidence(detector))(*stored_study(intact, tmp_path, "fracture"))
    assert isinstance(result, Analysed) and result.outcome.state == "NO_FRACTURE"
    assert result.outcome.verdict == "NORMAL_READING" and not result.outcome.eligible_for_discharge
    assert set(result.outcome.not_enabled) == {Decision.RULE_OUT, Decision.BOXES}
    broken = phantoms.trauma_study(True, seed=5, size=256, images=3)
    flagged = FracturePipeline(without_evidence(detector))(*stored_study(broken, tmp_path, "fracture"))
    assert isinstance(flagged, Analysed) and flagged.outcome.verdict in ("FRACTURE", "DOUBT")
    assert any(i.boxes for i in flagged.outcome.images) and flagged.outcome.marks == (), "kept, not shown"


def test_without_single_reading_evidence_every_screen_is_double_read(classifier, tmp_path):
    pipeline = BreastPipeline(without_evidence(classifier), single_read_max_score=10)  # all would be
    result = pipeline(*stored_study(phantoms.screen(None, seed=4, size=128), tmp_path, "breast"))
    assert isinstance(result, Analysed) and result.outcome.score is not None
    assert result.outcome.route == "DOUBLE_READ" and Decision.SINGLE_READ in result.outcome.not_enabled
    enabled = BreastPipeline(classifier, single_read_max_score=10)(
        *stored_study(phantoms.screen(None, seed=4, size=128), tmp_path, "breast")
    )
    assert isinstance(enabled, Analysed) and enabled.outcome.route == "SINGLE_READ"


def test_the_screening_threshold_in_force_is_read_for_each_screen(classifier, tmp_path):
    """Two admins may move the threshold while the worker runs: each screen uses, and names, the one
    in force when it is scored."""
    in_force = [10]
    pipeline = BreastPipeline(classifier, single_read_max_score=lambda: in_force[0])
    first = pipeline(*stored_study(phantoms.screen(None, seed=4, size=128), tmp_path, "breast"))
    in_force[0] = 0
    second = pipeline(*stored_study(phantoms.screen(None, seed=4, size=128), tmp_path / "again", "breast"))
    assert isinstance(first, Analysed) and isinstance(second, Analysed)
    assert (first.outcome.route, first.outcome.single_read_max_score) == ("SINGLE_READ", 10)
    assert (second.outcome.route, second.outcome.single_read_max_score) == ("DOUBLE_READ", 0)
