"""A few training steps on phantoms must separate fractured from intact, lesion from no lesion."""

import numpy as np
import pytest
import torch

from evaluation.metrics import auroc
from inference.networks import CentrePointDetector, ViewClassifier
from testkit.phantoms import mammogram, radiograph
from training.config import TrainConfig
from training.train import image_probabilities, train_network
from triage.imaging import HeaderFacts
from triage.manifests import Sample


def phantom_samples(make, count, seed, modality):
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(count):
        positive = index % 2 == 0
        pixels, boxes = make(128, positive, rng)
        samples.append(
            Sample(
                label=int(positive),
                group=f"{seed}-{index}",
                meta=HeaderFacts(modality=modality),
                boxes=boxes,
                pixels=pixels,
            )
        )
    return samples


def config(pipeline):
    return TrainConfig(
        pipeline=pipeline,
        dataset="fracatlas" if pipeline == "fracture" else "mini_mias",
        name="phantom",
        version="0",
        input_size=128,
        epochs=50,
        batch_size=8,
        learning_rate=2e-3,
        validation_fraction=0,
        test_fraction=0.2,
        threads=2,
    )


@pytest.mark.parametrize(
    ("pipeline", "make", "network", "modality"),
    [("fracture", radiograph, CentrePointDetector, "DX"), ("breast", mammogram, ViewClassifier, "MG")],
)
def test_a_few_steps_on_phantoms_separate_positives_from_negatives(pipeline, make, network, modality):
    train = phantom_samples(make, 48, seed=1, modality=modality)
    test = phantom_samples(make, 24, seed=2, modality=modality)
    detection = pipeline == "fracture"
    untrained = image_probabilities(network(pretrained=True), test, 128, detection=detection)
    trained_net = train_network(
        network(pretrained=True), train, config(pipeline), detection=detection, max_steps=40
    )
    trained = image_probabilities(trained_net, test, 128, detection=detection)
    labels = [s.label for s in test]
    assert auroc(labels, trained) >= 0.9
    assert auroc(labels, trained) > auroc(labels, untrained), "training must be what separates them"


def test_training_resumes_from_its_checkpoint_where_it_stopped(tmp_path):
    samples = phantom_samples(mammogram, 16, seed=3, modality="MG")

    def fresh():
        torch.manual_seed(0)  # the same starting weights each time
        return ViewClassifier(pretrained=False)

    cfg = config("breast").model_copy(update={"epochs": 3, "input_size": 64})
    straight = train_network(fresh(), samples, cfg, detection=False)
    checkpoint = tmp_path / "checkpoint.pt"
    first = cfg.model_copy(update={"epochs": 2})
    train_network(fresh(), samples, first, detection=False, checkpoint=checkpoint)
    epochs = []
    resumed = train_network(
        fresh(),
        samples,
        cfg,
        detection=False,
        checkpoint=checkpoint,
        progress=lambda epoch, *_: epochs.append(epoch),
    )
    assert epochs == [3]  # only the epoch that was left
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
