"""The training loop: AdamW with a warm-up and a cosine decay, an exponential moving average of the
weights (what is kept and shipped), mixed precision where the hardware has it, resumable checkpoints.

Seeds are fixed and the batches are drawn from a seeded generator, so a run resumed from a checkpoint
ends with the same weights as one run straight through.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from inference.model import pick_device
from training.config import TrainConfig
from training.data import ImageDataset
from triage.manifests import Sample

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """Where training is, for a progress display."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float  # the mean loss of the epoch so far
    elapsed_seconds: float


Progress = Callable[[Step], None]


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


def box_loss(heatmap: torch.Tensor, sizes: torch.Tensor, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    _, _, true_heatmap, true_sizes, mask = batch
    size_loss = (torch.abs(sizes - true_sizes) * mask).sum() / mask.sum().clamp(min=1.0)
    return focal_loss(heatmap, true_heatmap) + 0.1 * size_loss


def loss_of(
    architecture: str, outputs: object, batch: Sequence[torch.Tensor], detection_weight: float
) -> torch.Tensor:
    """The architecture's loss: image label (BCE), boxes (focal + size), or both."""
    label = batch[1]
    if architecture == "classifier-lite0":
        assert isinstance(outputs, torch.Tensor)
        return F.binary_cross_entropy_with_logits(outputs.float(), label)
    assert isinstance(outputs, tuple)
    if architecture == "centrepoint-lite0":
        heatmap, sizes = outputs
        return box_loss(heatmap.float(), sizes.float(), batch)
    logits, heatmap, sizes = outputs
    classification = F.binary_cross_entropy_with_logits(logits.float(), label)
    return classification + detection_weight * box_loss(heatmap.float(), sizes.float(), batch)


def hardware(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """What a run trains on, in words: the GPU's name, or the CPU's model, core count and whether it
    computes bfloat16 natively."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    try:
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
    except OSError:
        names = []
    bf16 = "native bfloat16" if cpu_has_bf16(cpuinfo) else "no native bfloat16"
    return f"{len(names) or os.cpu_count()} cores of {names[0] if names else 'an unknown CPU'} ({bf16})"


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX-512 BF16 or AMX). Without it torch emulates
    bfloat16 and a step is slower than in float32 (measured on an AVX2-only EPYC: 23 s against 19 s
    for 16 images at 384 px), so mixed precision is not worth turning on there."""
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def mixed_precision(device: torch.device, enabled: bool) -> torch.autocast:
    """Mixed precision where it pays: float16 on CUDA, bfloat16 on CPUs that have it (1.7x faster per
    step on one with AVX-512 BF16); elsewhere the config's request is ignored, with a log line."""
    if enabled and device.type == "cpu" and not cpu_has_bf16():
        logger.info("mixed precision off: this CPU has no native bfloat16 (it would be slower)")
        enabled = False
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


class Averaged:
    """An exponential moving average of a network's weights; buffers (batch-norm statistics) copied."""

    def __init__(self, network: nn.Module, decay: float) -> None:
        self.network = copy.deepcopy(network).eval()
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        # The decay ramps up, so that early on (and in a short run) the average follows the network.
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for averaged, current in zip(
            self.network.state_dict().values(), network.state_dict().values(), strict=True
        ):
            if averaged.is_floating_point():
                averaged.mul_(decay).add_(current.detach(), alpha=1 - decay)
            else:
                averaged.copy_(current)


def _schedule(optimiser: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        return (
            min(1.0, (step + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        )

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def train_network(
    network: nn.Module,
    samples: Sequence[Sample],
    config: TrainConfig,
    *,
    progress: Progress | None = None,
    max_steps: int | None = None,
    checkpoint: Path | None = None,
) -> nn.Module:
    """Train in place and return the averaged network (eval mode, on the CPU); ``max_steps`` stops
    early (tests). With ``checkpoint`` the state is saved after every epoch and a run that finds one
    resumes after its epoch."""
    seed_everything(config.seed, config.threads)
    device = pick_device()
    network.to(device)
    dataset = ImageDataset(samples, config.input_size, augment=config.augment, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        drop_last=len(samples) > config.batch_size,
    )
    optimiser = torch.optim.AdamW(
        [parameter for parameter in network.parameters() if parameter.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    batches = len(loader)
    schedule = _schedule(optimiser, round(config.warmup_epochs * batches), config.epochs * batches)
    averaged = Averaged(network, config.ema_decay)
    first_epoch = _resume(checkpoint, network, averaged, optimiser, schedule, generator, dataset, device)
    amp = mixed_precision(device, config.mixed_precision)
    started, step = time.monotonic(), 0
    for epoch in range(first_epoch, config.epochs):
        network.train()
        total = 0.0
        for index, batch in enumerate(loader):
            batch = [tensor.to(device) for tensor in batch]
            with amp:
                outputs = network(batch[0])
            loss = loss_of(config.architecture, outputs, batch, config.detection_weight)
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            averaged.update(network)
            step, total = step + 1, total + loss.item()
            if progress is not None:
                elapsed = time.monotonic() - started
                progress(Step(epoch + 1, config.epochs, index + 1, batches, total / (index + 1), elapsed))
            if max_steps is not None and step >= max_steps:
                return averaged.network.cpu()
        if checkpoint is not None:
            _save(checkpoint, network, averaged, optimiser, schedule, generator, dataset, epoch)
    return averaged.network.cpu()


def _save(
    path: Path,
    network: nn.Module,
    averaged: Averaged,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LambdaLR,
    generator: torch.Generator,
    dataset: ImageDataset,
    epoch: int,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(
        {
            "network": network.state_dict(),
            "averaged": averaged.network.state_dict(),
            "averaged_updates": averaged.updates,
            "optimiser": optimiser.state_dict(),
            "schedule": schedule.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "augment_rng": dataset.rng.bit_generator.state,
            "epoch": epoch,
        },
        partial,
    )
    partial.replace(path)  # a crash mid-save leaves the previous checkpoint whole


def _resume(
    path: Path | None,
    network: nn.Module,
    averaged: Averaged,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LambdaLR,
    generator: torch.Generator,
    dataset: ImageDataset,
    device: torch.device,
) -> int:
    """Load a checkpoint when there is one; the first epoch still to run."""
    if path is None or not path.is_file():
        return 0
    saved = torch.load(path, map_location=device, weights_only=False)
    network.load_state_dict(saved["network"])
    averaged.network.load_state_dict(saved["averaged"])
    averaged.updates = int(saved["averaged_updates"])
    optimiser.load_state_dict(saved["optimiser"])
    schedule.load_state_dict(saved["schedule"])
    generator.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    dataset.rng.bit_generator.state = saved["augment_rng"]
    logger.info("resuming from %s after epoch %d", path, saved["epoch"] + 1)
    return int(saved["epoch"]) + 1
