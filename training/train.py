"""Train one model: read the data, split it by group, train, choose the operating points on the
validation part, measure on the test part, and write the model folder with its card.

Every image goes through ``inference.transforms`` and is scored by ``inference.predict``, so a model
is trained and measured on exactly what it will see, and conclude, in service.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluation.evidence import fracture_evidence
from evaluation.operating_points import (
    decile_cut_points,
    threshold_for_sensitivity,
    threshold_for_specificity,
)
from inference.networks import CentrePointDetector, FractureNet, ViewClassifier
from inference.predict import run as predict
from inference.transforms import prepare
from training.adapters import ADAPTERS
from training.config import TrainConfig
from training.data import readable, split_by_group, split_for_fold
from training.export import (
    MINI_MIAS,
    PREPROCESSING,
    SYNTHETIC_CC,
    fracatlas_credit,
    intended_use,
    now,
    write_model,
)
from training.figures import Scored, breast_figures, exams, fracture_figures
from training.loop import Progress, hardware, train_network
from triage.cards import DatasetCredit, Metric, ModelCard
from triage.manifests import Sample, manifest_credit, read_manifest
from triage.pipelines import Pipeline

logger = logging.getLogger(__name__)

POSITIVES = {"mini_mias_abnormal": "any finding (benign or malignant)", "mini_mias": "a malignant finding"}
SCORED = "scored.json"  # the test part's predictions, beside the model, for a cross-validation to pool
_BATCH = 16


@dataclass(frozen=True)
class Data:
    samples: list[Sample]
    unreadable: list[str]
    credits: list[DatasetCredit]


def load_data(config: TrainConfig, data: Path) -> Data:
    """The readable samples of a public set or a manifest; the unreadable ones named with why."""
    if config.dataset == "manifest":
        samples, dropped = readable(read_manifest(data, config.pipeline.modality))
        return Data(samples, dropped, [manifest_credit(data)])
    samples, dropped = readable(ADAPTERS[config.dataset](data))
    credits = (
        [fracatlas_credit(data, len(samples) + len(dropped))]
        if config.pipeline == Pipeline.FRACTURE
        else [MINI_MIAS, SYNTHETIC_CC]
    )
    return Data(samples, dropped, credits)


def split(config: TrainConfig, samples: Sequence[Sample]) -> tuple[list[Sample], list[Sample], list[Sample]]:
    if config.folds > 1:
        return split_for_fold(
            samples, config.folds, config.test_fold, config.validation_fraction, config.seed
        )
    return split_by_group(samples, config.validation_fraction, config.test_fraction, config.seed)


def build(config: TrainConfig) -> nn.Module:
    """A fresh network of the config's architecture, from ImageNet weights when asked."""
    networks = {
        "centrepoint-lite0": CentrePointDetector,
        "classifier-lite0": ViewClassifier,
        "fracture-lite0": FractureNet,
    }
    network = networks[config.architecture](config.pretrained)
    freeze_early(network, config.frozen_stages)
    return network


def freeze_early(network: nn.Module, stages: int) -> None:
    """Keep the stem and the first ``stages`` backbone stages as they are (no gradient, so no backward
    pass through them); their batch-norm statistics still adapt to radiographs."""
    if stages == 0:
        return
    backbone = network.get_submodule("backbone")
    blocks = backbone.get_submodule("_blocks")
    assert isinstance(blocks, nn.Sequential)
    early = [backbone.get_submodule("_conv_stem"), backbone.get_submodule("_bn0"), *list(blocks)[:stages]]
    for module in early:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def as_shipped(network: nn.Module) -> None:
    """Round the weights to half precision, as they are saved, so the card measures what ships."""
    with torch.no_grad():
        for tensor in network.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def score(
    network: nn.Module | Callable[[torch.Tensor], Any], config: TrainConfig, samples: Sequence[Sample]
) -> list[Scored]:
    """Each sample as the service would score it (on the CPU, as the card's figures are measured);
    ``network`` may be the module or what serves it (``inference.onnx_runtime.OnnxRunner``)."""
    if isinstance(network, nn.Module):
        network.eval()
    scored: list[Scored] = []
    for start in range(0, len(samples), _BATCH):
        chunk = samples[start : start + _BATCH]
        inputs = [prepare(s.load(), s.meta, config.input_size) for s in chunk]
        results = predict(network, config.architecture, inputs, torch.device("cpu"), config.test_time_flip)
        for sample, geometry, result in zip(chunk, inputs, results, strict=True):
            detections = [
                [*geometry.box_to_source((d.x0, d.y0, d.x1, d.y1)), d.score] for d in result.detections
            ]
            scored.append(
                Scored(
                    image=str(sample.path),
                    label=sample.label,
                    group=sample.group,
                    exam=sample.exam,
                    probability=result.probability,
                    laterality=sample.meta.laterality,
                    view=sample.meta.view,
                    boxes=[list(b) for b in sample.boxes],
                    detections=detections,
                    subgroups=dict(sample.subgroups),
                )
            )
    return scored


def _with_points(scored: Sequence[Scored], doubt: float, fracture: float) -> list[Scored]:
    return [Scored(**{**s.to_json(), "doubt": doubt, "fracture": fracture}) for s in scored]


def run(
    config: TrainConfig,
    data: Path,
    out: Path,
    progress: Progress | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    cross_validated: dict[str, Metric] | None = None,
) -> ModelCard:
    """Train on a public data set or a manifest, choose operating points, measure on held-out
    groups, write the model (and its test part's predictions, ``scored.json``). ``resume`` continues
    from ``out/checkpoint.pt``; ``max_steps`` stops early (tests); ``cross_validated`` are the recipe's
    figures across folds, for the card."""
    checkpoint = out / "checkpoint.pt"
    if not resume:
        checkpoint.unlink(missing_ok=True)
    found = load_data(config, data)
    for reason in found.unreadable:
        logger.warning("left out, unreadable: %s", reason)
    train, validation, test = split(config, found.samples)
    logger.info(
        "training %s on %d images (%d validation, %d test)",
        config.name,
        len(train),
        len(validation),
        len(test),
    )
    started, resumed = time.monotonic(), resume and checkpoint.is_file()
    network = train_network(
        build(config), train, config, progress=progress, checkpoint=checkpoint, max_steps=max_steps
    )
    as_shipped(network)
    minutes = (time.monotonic() - started) / 60
    share = " (the resumed part of a run)" if resumed else ""
    common = {
        "name": config.name,
        "version": config.version,
        "pipeline": config.pipeline,
        "architecture": config.architecture,
        "input_size": config.input_size,
        "test_time_flip": config.test_time_flip,
        "intended_use": intended_use(config.pipeline),
        "preprocessing": PREPROCESSING,
        "data": found.credits,
        "cross_validated": cross_validated or {},
        "reproduce": f"triage train configs/train/{config.pipeline}.yaml --data <the {data.name} folder> "
        f"--out {out}",
        "created": now(),
        "trained": f"{minutes:.0f} min{share} for {config.epochs} epochs at {config.input_size} px, "
        f"{config.threads} thread(s), on {hardware()}",
    }
    scored = score(network, config, test)
    if config.pipeline == Pipeline.FRACTURE:
        card = _fracture_card(
            config, network, out, common, found, score(network, config, validation), scored, test
        )
    else:
        card = _breast_card(config, network, out, common, found, scored, test)
    (out / SCORED).write_text(json.dumps([s.to_json() for s in scored]), encoding="utf-8")
    return card


def _fracture_card(
    config: TrainConfig,
    network: nn.Module,
    out: Path,
    common: dict[str, object],
    found: Data,
    validation: list[Scored],
    scored: list[Scored],
    test: list[Sample],
) -> ModelCard:
    """DOUBT for the target sensitivity and FRACTURE for the target specificity, on validation."""
    labels, probabilities = [s.label for s in validation], [s.probability for s in validation]
    doubt = threshold_for_sensitivity(labels, probabilities, config.target_sensitivity)
    fracture = max(doubt, threshold_for_specificity(labels, probabilities, config.target_specificity))
    scored[:] = _with_points(scored, doubt, fracture)
    held_out = (
        f"{len(test)} images of {found.credits[0].name} in {len({s.group for s in test})} groups never "
        f"trained on ({len(found.unreadable)} unreadable images left out of all splits); operating points "
        f"chosen on {len(validation)} other images (targets: sensitivity {config.target_sensitivity}, "
        f"specificity {config.target_specificity}); one image = one study"
    )
    if config.folds > 1:
        held_out += (
            f"; the test part is fold {config.test_fold} of {config.folds} grouped by connected groups"
        )
    metrics = fracture_figures(scored)
    return write_model(
        out, network, **common, held_out=held_out, metrics=metrics,
        fracture_threshold=fracture, doubt_threshold=doubt,
        evidence=fracture_evidence(metrics, doubt, f"training's test part: {held_out}"),
        reference_deciles=decile_cut_points([s.probability for s in scored]),
    )  # fmt: skip


def _breast_card(
    config: TrainConfig,
    network: nn.Module,
    out: Path,
    common: dict[str, object],
    found: Data,
    scored: list[Scored],
    test: list[Sample],
) -> ModelCard:
    """The nine decile cut-points of the test women's exam probabilities. No single-reading evidence:
    the cut-points are chosen on the very exams it would be measured on (``triage calibrate`` chooses
    on some exams and measures on others, and writes it)."""
    labels, probabilities = exams(scored)
    held_out = (
        f"{len(labels)} women ({len(test)} views) of {found.credits[0].name} never trained on; "
        f"positive = {POSITIVES.get(config.dataset, 'as the manifest labels')}; the decile cut-points "
        "are the deciles of their exam probabilities: an enriched research set, not a screening "
        "population, so recalibrate on the site's own screens before use"
    )
    return write_model(
        out, network, **common, held_out=held_out, metrics=breast_figures(scored),
        decile_cut_points=decile_cut_points(probabilities),
    )  # fmt: skip
