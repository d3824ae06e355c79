"""Training loops for the detector and the view classifier, and the held-out evaluation.

Seeds are fixed, threads are set, and every image goes through ``inference.transforms``, so a model
sees in training exactly what it will see in service.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from evaluation.metrics import metric_with_ci
from evaluation.operating_points import (
    decile_cut_points,
    threshold_for_sensitivity,
    threshold_for_specificity,
)
from inference.breast import exam_probability
from inference.fracture import decode, study_probability
from inference.model import pick_device
from inference.networks import CentrePointDetector, ViewClassifier
from inference.transforms import prepare
from training.adapters import ADAPTERS
from training.config import TrainConfig
from training.data import ImageDataset, readable, split_by_group
from training.export import (
    FRACATLAS,
    MINI_MIAS,
    PREPROCESSING,
    SYNTHETIC_CC,
    intended_use,
    now,
    write_model,
)
from triage.cards import ModelCard
from triage.manifests import Sample, manifest_credit, read_manifest
from triage.pipelines import Pipeline

logger = logging.getLogger(__name__)

POSITIVES = {"mini_mias_abnormal": "any finding (benign or malignant)", "mini_mias": "a malignant finding"}
Progress = Callable[[int, int, float, float], None]  # epoch, epochs, loss, seconds elapsed


def seed_everything(seed: int, threads: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on a Gaussian centre heatmap."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    positives = positive.sum().clamp(min=1.0)
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * positive).sum()
    neg_loss = -(torch.log(1 - p) * p**2 * (1 - target) ** 4 * (1 - positive)).sum()
    return (pos_loss + neg_loss) / positives


def detection_loss(outputs: tuple[torch.Tensor, torch.Tensor], batch: Sequence[torch.Tensor]) -> torch.Tensor:
    heatmap_logits, log_sizes = outputs
    _, heatmap, sizes, mask = batch
    size_loss = (torch.abs(log_sizes - sizes) * mask).sum() / mask.sum().clamp(min=1.0)
    return focal_loss(heatmap_logits, heatmap) + 0.1 * size_loss


def train_network(
    network: nn.Module,
    samples: Sequence[Sample],
    config: TrainConfig,
    *,
    detection: bool,
    progress: Progress | None = None,
    max_steps: int | None = None,
    checkpoint: Path | None = None,
) -> nn.Module:
    """Train in place with AdamW, on the GPU when there is one; ``max_steps`` stops early (tests).

    With ``checkpoint``, the network, optimiser and random states are saved after every epoch, and
    a run that finds a checkpoint there resumes after its epoch (same seed, same batches).
    """
    seed_everything(config.seed, config.threads)
    device = pick_device()
    network.to(device)
    dataset = ImageDataset(samples, config.input_size, detection=detection, augment=True, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, shuffle=True, generator=generator
    )
    trainable = [p for name, p in network.named_parameters() if not config.freeze_backbone or "_fc" in name]
    if config.freeze_backbone:
        for name, parameter in network.named_parameters():
            parameter.requires_grad_("_fc" in name)
    optimiser = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    positives = sum(s.label for s in samples)
    pos_weight = torch.tensor((len(samples) - positives) / max(positives, 1))
    classification = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    started, step, first_epoch = time.monotonic(), 0, 0
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        network.load_state_dict(saved["network"])
        optimiser.load_state_dict(saved["optimiser"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        dataset.rng.bit_generator.state = saved["augment_rng"]
        first_epoch = saved["epoch"] + 1
        logger.info("resuming from %s after epoch %d", checkpoint, first_epoch)
    network.train()
    if config.freeze_backbone:  # frozen means batch-norm statistics too
        for module in network.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
    for epoch in range(first_epoch, config.epochs):
        total, batches = 0.0, 0
        for batch in loader:
            batch = [tensor.to(device) for tensor in batch]
            outputs = network(batch[0])
            loss = detection_loss(outputs, batch) if detection else classification(outputs, batch[1])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, batches, step = total + loss.item(), batches + 1, step + 1
            if max_steps is not None and step >= max_steps:
                network.eval()
                return network
        if checkpoint is not None:
            _save_checkpoint(checkpoint, network, optimiser, generator, dataset, epoch)
        if progress is not None:
            progress(epoch + 1, config.epochs, total / max(batches, 1), time.monotonic() - started)
    network.eval().to("cpu")
    return network


def _save_checkpoint(
    path: Path,
    network: nn.Module,
    optimiser: torch.optim.Optimizer,
    generator: torch.Generator,
    dataset: ImageDataset,
    epoch: int,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(
        {
            "network": network.state_dict(),
            "optimiser": optimiser.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "augment_rng": dataset.rng.bit_generator.state,
            "epoch": epoch,
        },
        partial,
    )
    partial.replace(path)  # a crash mid-save leaves the previous checkpoint whole


@torch.inference_mode()
def image_probabilities(
    network: nn.Module, samples: Sequence[Sample], size: int, *, detection: bool
) -> list[float]:
    """Each sample's probability: most confident box (detector) or sigmoid of the logit (classifier)."""
    network.eval()
    probabilities = []
    for sample in samples:
        pixels = prepare(sample.load(), sample.meta, size).pixels[None]
        if detection:
            heatmap, sizes = network(pixels)
            probabilities.append(study_probability(decode(heatmap, sizes)))
        else:
            probabilities.append(float(torch.sigmoid(network(pixels))[0]))
    return probabilities


@dataclass(frozen=True)
class ExamScores:
    """Exam-level labels and probabilities of the breast test women."""

    labels: list[int]
    probabilities: list[float]


def exam_scores(samples: Sequence[Sample], probabilities: Sequence[float]) -> ExamScores:
    """Group view probabilities by woman into exam probabilities (worse breast, worst view)."""
    exams: dict[str, list[tuple[tuple[str, str], float]]] = {}
    labels: dict[str, int] = {}
    for sample, probability in zip(samples, probabilities, strict=True):
        exams.setdefault(sample.group, []).append(((sample.meta.laterality, sample.meta.view), probability))
        labels[sample.group] = max(labels.get(sample.group, 0), sample.label)
    groups = sorted(exams)
    return ExamScores([labels[g] for g in groups], [exam_probability(exams[g])[0] for g in groups])


def as_shipped(network: nn.Module) -> None:
    """Round the weights to half precision, as they are saved, so the card measures what ships."""
    with torch.no_grad():
        for tensor in network.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def build(config: TrainConfig) -> nn.Module:
    """A fresh network of the config's architecture, from ImageNet weights when asked."""
    if config.architecture == "centrepoint-lite0":
        return CentrePointDetector(config.pretrained)
    return ViewClassifier(config.pretrained)


def run(
    config: TrainConfig,
    data: Path,
    out: Path,
    progress: Progress | None = None,
    resume: bool = False,
    max_steps: int | None = None,
) -> ModelCard:
    """Train on a public data set or a manifest, choose operating points, measure on held-out
    groups, write the model. ``resume`` continues from ``out/checkpoint.pt``; ``max_steps`` stops
    early (tests)."""
    checkpoint = out / "checkpoint.pt"
    if not resume:
        checkpoint.unlink(missing_ok=True)
    if config.dataset == "manifest":
        samples, dropped = readable(read_manifest(data, config.pipeline.modality))
        credits = [manifest_credit(data)]
    else:
        samples, dropped = readable(ADAPTERS[config.dataset](data))
        credits = [FRACATLAS] if config.pipeline == Pipeline.FRACTURE else [MINI_MIAS, SYNTHETIC_CC]
    for reason in dropped:
        logger.warning("left out, unreadable: %s", reason)
    train, validation, test = split_by_group(
        samples, config.validation_fraction, config.test_fraction, config.seed
    )
    detection = config.architecture == "centrepoint-lite0"
    logger.info(
        "training %s on %d images (%d validation, %d test)",
        config.name,
        len(train),
        len(validation),
        len(test),
    )
    network = train_network(
        build(config),
        train,
        config,
        detection=detection,
        progress=progress,
        checkpoint=checkpoint,
        max_steps=max_steps,
    )
    as_shipped(network)
    reproduce = (
        f"triage train configs/train/{config.pipeline}.yaml --data <{config.dataset} folder> --out {out}"
    )
    common = {
        "name": config.name,
        "version": config.version,
        "pipeline": config.pipeline,
        "architecture": config.architecture,
        "input_size": config.input_size,
        "intended_use": intended_use(config.pipeline),
        "preprocessing": PREPROCESSING,
        "reproduce": reproduce,
        "created": now(),
    }
    if config.pipeline == Pipeline.FRACTURE:
        val_scores = image_probabilities(network, validation, config.input_size, detection=True)
        val_labels = [s.label for s in validation]
        doubt = threshold_for_sensitivity(val_labels, val_scores, config.target_sensitivity)
        fracture = max(doubt, threshold_for_specificity(val_labels, val_scores, config.target_specificity))
        labels = [s.label for s in test]
        scores = image_probabilities(network, test, config.input_size, detection=True)
        return write_model(
            out,
            network,
            **common,
            data=credits,
            held_out=(
                f"{len(test)} images of {credits[0].name} in {len({s.group for s in test})} groups "
                f"never trained on ({len(dropped)} unreadable images left out of all splits); operating "
                f"points chosen on {len(validation)} other validation images (targets: sensitivity "
                f"{config.target_sensitivity}, specificity {config.target_specificity}); "
                "one image = one study"
            ),
            metrics={
                "auroc": metric_with_ci("auroc", labels, scores),
                "sensitivity_at_doubt": metric_with_ci("sensitivity", labels, scores, doubt),
                "specificity_at_doubt": metric_with_ci("specificity", labels, scores, doubt),
                "sensitivity_at_fracture": metric_with_ci("sensitivity", labels, scores, fracture),
                "specificity_at_fracture": metric_with_ci("specificity", labels, scores, fracture),
            },
            fracture_threshold=fracture,
            doubt_threshold=doubt,
        )
    view_scores = image_probabilities(network, test, config.input_size, detection=detection)
    exams = exam_scores(test, view_scores)
    return write_model(
        out,
        network,
        **common,
        data=credits,
        held_out=(
            f"{len(exams.labels)} women ({len(test)} views) of {credits[0].name} never trained on; "
            f"positive = {POSITIVES.get(config.dataset, 'as the manifest labels')}; the decile cut-points "
            "are the deciles of their exam probabilities: an enriched research set, not a screening "
            "population, so recalibrate on the site's own screens before use"
        ),
        metrics={
            "exam_auroc": metric_with_ci("auroc", exams.labels, exams.probabilities),
            "view_auroc": metric_with_ci("auroc", [s.label for s in test], view_scores),
        },
        decile_cut_points=decile_cut_points(exams.probabilities),
    )
