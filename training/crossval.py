"""Grouped cross-validation of a training recipe: one model per fold, every fold's test part pooled.

Each fold is a whole training run (``training.train.run``) into ``OUT/folds/<k>``; folds run in
separate processes with one torch thread each (measured on these 2-core CPUs: two threads in one
process gained little under load, two processes with one thread each scale), and a fold already
finished is not run again, so an interrupted cross-validation resumes. The model of the config's
``test_fold`` is the one shipped: it is copied to ``OUT`` with the pooled figures in its card's
``cross_validated``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from training.config import TrainConfig
from training.figures import Scored, breast_figures, fracture_figures
from training.loop import Step
from training.train import SCORED, run
from triage.cards import Metric, ModelCard, read_card
from triage.pipelines import Pipeline

logger = logging.getLogger(__name__)


def _log_epochs(step: Step) -> None:
    if step.batch == step.batches:
        logger.info(
            "epoch %d/%d loss %.4f after %.0f s", step.epoch, step.epochs, step.loss, step.elapsed_seconds
        )


def _fold(config: TrainConfig, fold: int, data: Path, folder: Path, threads: int = 1) -> str:
    """One fold's run, in a worker process."""
    from triage.logs import configure_logging

    configure_logging()
    if not (folder / SCORED).is_file():
        run(
            config.model_copy(update={"test_fold": fold, "threads": threads}),
            data,
            folder,
            _log_epochs,
            resume=True,
        )
    return str(folder)


def fold_threads(fold: int, folds: int, jobs: int, threads: int) -> int:
    """One thread per fold, except in a last round with fewer folds than jobs, whose folds share the
    config's threads (the fifth of five folds on two cores would otherwise leave one idle)."""
    left = folds % jobs
    if left and fold >= folds - left:
        return max(1, threads // left)
    return 1


def pooled(config: TrainConfig, folders: list[Path]) -> dict[str, Metric]:
    """The recipe's figures over every fold's test part."""
    scored = [Scored(**row) for folder in folders for row in json.loads((folder / SCORED).read_text())]
    return fracture_figures(scored) if config.pipeline == Pipeline.FRACTURE else breast_figures(scored)


def cross_validate(config: TrainConfig, data: Path, out: Path, jobs: int = 2) -> ModelCard:
    """Train every fold (``jobs`` at a time), pool their test parts, and ship ``test_fold``'s model."""
    if config.folds < 2:
        raise ValueError("cross-validation needs folds: 2 or more in the training config")
    folders = [out / "folds" / str(fold) for fold in range(config.folds)]
    threads = [fold_threads(fold, config.folds, jobs, config.threads) for fold in range(config.folds)]
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        for finished in pool.map(
            _fold, [config] * config.folds, range(config.folds), [data] * config.folds, folders, threads
        ):
            logger.info("fold done: %s", finished)
    figures = pooled(config, folders)
    (out / "cross-validation.json").write_text(
        json.dumps({name: metric.model_dump() for name, metric in figures.items()}, indent=2),
        encoding="utf-8",
    )
    shipped = folders[config.test_fold]
    for name in ("weights.pt", SCORED):
        shutil.copy2(shipped / name, out / name)
    reproduce = (
        f"triage train configs/train/{config.pipeline}.yaml --data <the {data.name} folder> --out {out} "
        f"--cross-validate --jobs {jobs}"
    )
    card = read_card(shipped)
    held_out = (
        f"{card.held_out}; cross_validated holds the recipe's figures pooled over every fold's test part, "
        "each at the operating points chosen inside its own training folds"
    )
    card = card.model_copy(update={"cross_validated": figures, "reproduce": reproduce, "held_out": held_out})
    card.write(out)
    return card
