"""A few training steps on phantoms must separate fractured from intact, lesion from no lesion."""

import numpy as np
import pytest
import torch

from evaluation.metrics import auroc
from inference.networks import CentrePointDetector, FractureNet, ViewClassifier
from testkit.phantoms import mammogram, radiograph
from training.config import TrainConfig
from training.loop import train_network
from training.train import build, score
from triage.header_facts import HeaderFacts
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


ARCHITECTURE = {
    CentrePointDetector: "centrepoint-lite0",
    ViewClassifier: "classifier-lite0",
    FractureNet: "fracture-lite0",
}


def config(pipeline, architecture="centrepoint-lite0"):
    return TrainConfig(
        pipeline=pipeline,
        architecture=architecture,
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


def probabilities(network, cfg, samples):
    return [s.probability for s in score(network, cfg, samples)]


@pytest.mark.parametrize(
    ("pipeline", "make", "network", "modality"),
    [
        ("fracture", radiograph, CentrePointDetector, "DX"),
        ("fracture", radiograph, FractureNet, "DX"),
        ("breast", mammogram, ViewClassifier, "MG"),
    ],
)
def test_a_few_steps_on_phantoms_separate_positives_from_negatives(pipeline, make, network, modality):
    train = phantom_samples(make, 48, seed=1, modality=modality)
    test = phantom_samples(make, 24, seed=2, modality=modality)
    cfg = config(pipeline, ARCHITECTURE[network])
    untrained = probabilities(network(pretrained=True), cfg, test)
    trained = probabilities(train_network(network(pretrained=True), train, cfg, max_steps=40), cfg, test)
    labels = [s.label for s in test]
    assert auroc(labels, trained) >= 0.9
    assert auroc(labels, trained) > auroc(labels, untrained), "training must be what separates them"


def test_training_resumes_from_its_checkpoint_where_it_stopped(tmp_path):
    samples = phantom_samples(mammogram, 16, seed=3, modality="MG")

    def fresh():
        torch.manual_seed(0)  # the same starting weights each time
        return ViewClassifier(pretrained=False)

    cfg = config("breast", "classifier-lite0").model_copy(update={"epochs": 3, "input_size": 64})
    straight = train_network(fresh(), samples, cfg)
    checkpoint = tmp_path / "checkpoint.pt"

    class Crash(Exception):
        pass

    def crash_in_the_third_epoch(step):
        if step.epoch == 3:
            raise Crash

    with pytest.raises(Crash):
        train_network(fresh(), samples, cfg, checkpoint=checkpoint, progress=crash_in_the_third_epoch)
    epochs = []
    resumed = train_network(
        fresh(), samples, cfg, checkpoint=checkpoint, progress=lambda step: epochs.append(step.epoch)
    )
    assert set(epochs) == {3}  # only the epoch that was left
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name


def test_frozen_stages_keep_their_imagenet_weights_while_the_rest_learns():
    samples = phantom_samples(radiograph, 16, seed=4, modality="DX")
    cfg = config("fracture", "fracture-lite0").model_copy(update={"frozen_stages": 2, "input_size": 64})
    network = build(cfg)
    before = {name: tensor.clone() for name, tensor in network.state_dict().items()}
    train_network(network, samples, cfg, max_steps=3)
    after = network.state_dict()  # trained in place (what is returned is the running average)
    frozen = ("backbone._conv_stem.", "backbone._bn0.weight", "backbone._blocks.0.", "backbone._blocks.1.")
    weights = [name for name in before if name.endswith("weight") and "_bn" not in name]
    kept = [name for name in weights if name.startswith(frozen)]
    learnt = [name for name in weights if name.startswith(("backbone._blocks.2.", "classifier."))]
    assert kept and learnt
    assert all(torch.equal(before[name], after[name]) for name in kept)
    assert all(not torch.equal(before[name], after[name]) for name in learnt)
