"""Training runs recorded in MLflow: parameters, the resolved config, loss per epoch, held-out
metrics with their intervals, the model folder as artifacts, and the model registered with its card."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from inference import registry
from training.config import TrainConfig
from training.crossval import cross_validate
from training.loop import Progress, Step
from training.train import run
from triage.cards import ModelCard
from triage.pipelines import Pipeline
from triage.settings import Settings


@dataclass(frozen=True)
class TrackedRun:
    card: ModelCard
    run_id: str
    registered_version: str


def train_and_register(
    settings: Settings,
    config: TrainConfig,
    data: Path,
    out: Path,
    progress: Progress | None = None,
    resume: bool = False,
    max_steps: int | None = None,
    cross_validate_jobs: int = 0,
) -> TrackedRun:
    """Train with everything logged to MLflow, then register the model (not promoted). With
    ``cross_validate_jobs``, every fold is trained (that many at a time) and the recipe's pooled
    figures are logged too (``cv_`` metrics)."""
    mlflow_client = registry.client(settings)
    experiment = registry.experiment_id(settings, config.pipeline)
    run_id = mlflow_client.create_run(
        experiment,
        run_name=f"{config.name} {config.version}",
        tags={"pipeline": config.pipeline, "dataset": config.dataset, "data": str(data)},
    ).info.run_id
    try:
        for key, value in config.model_dump(mode="json").items():
            mlflow_client.log_param(run_id, key, value)
        mlflow_client.log_text(
            run_id, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), "config.yaml"
        )

        def logged(step: Step) -> None:
            if step.batch == step.batches:
                mlflow_client.log_metric(run_id, "train_loss", step.loss, step=step.epoch)
            if progress is not None:
                progress(step)

        if cross_validate_jobs:
            card = cross_validate(config, data, out, cross_validate_jobs)
        else:
            card = run(config, data, out, logged, resume=resume, max_steps=max_steps)
        for prefix, figures in (("", card.metrics), ("cv_", card.cross_validated)):
            for name, metric in figures.items():
                mlflow_client.log_metric(run_id, f"{prefix}{name}", metric.value)
                mlflow_client.log_metric(run_id, f"{prefix}{name}_ci95_low", metric.ci95_low)
                mlflow_client.log_metric(run_id, f"{prefix}{name}_ci95_high", metric.ci95_high)
        with tempfile.TemporaryDirectory() as folder:  # the model folder without the checkpoint
            model = Path(folder) / "model"
            model.mkdir()
            for name in ("card.json", card.weights_file):
                shutil.copy2(out / name, model / name)
            mlflow_client.log_artifacts(run_id, str(model), artifact_path="model")
    except BaseException:
        mlflow_client.set_terminated(run_id, "FAILED")
        raise
    mlflow_client.set_terminated(run_id, "FINISHED")
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return TrackedRun(card, run_id, registry.register(settings, out, run_id))


def log_run(
    settings: Settings,
    pipeline: Pipeline,
    name: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    artifacts: tuple[Path, ...] = (),
    model_folder: Path | None = None,
) -> str:
    """Record one finished evaluation or calibration in the pipeline's MLflow experiment; the run id.

    ``model_folder`` is logged as the run's ``model`` artifacts, so that it can be registered.
    """
    mlflow_client = registry.client(settings)
    run_id = str(
        mlflow_client.create_run(
            registry.experiment_id(settings, pipeline), run_name=name, tags=tags
        ).info.run_id
    )
    for metric, value in metrics.items():
        mlflow_client.log_metric(run_id, metric, value)
    for artifact in artifacts:
        mlflow_client.log_artifact(run_id, str(artifact))
    if model_folder is not None:
        mlflow_client.log_artifacts(run_id, str(model_folder), artifact_path="model")
    mlflow_client.set_terminated(run_id, "FINISHED")
    return run_id
