"""For ML engineers: train, evaluate, calibrate and compare models (runs recorded in MLflow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from triage.cli.common import ConfigOption, fail, settings
from triage.cli.progress import ProgressBar
from triage.logs import configure_logging
from triage.settings import Settings

if TYPE_CHECKING:
    from inference.model import LoadedModel
    from triage.manifests import Sample

ModelArgument = Annotated[
    str, typer.Argument(help="A model folder, PIPELINE@ALIAS (fracture@production) or PIPELINE/VERSION.")
]
ManifestArgument = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A manifest CSV.")]


def train(
    training_config: Annotated[
        Path,
        typer.Argument(
            exists=True,
            metavar="TRAINING_CONFIG",
            help="Base training YAML, e.g. configs/train/fracture.yaml (not the service settings: --config).",
        ),
    ],
    overlays: Annotated[
        list[Path] | None, typer.Argument(exists=True, help="Overlays applied in order.")
    ] = None,
    data: Annotated[
        Path, typer.Option("--data", exists=True, help="The data set's folder, or a manifest CSV.")
    ] = Path(),
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (weights + card.json).")] = Path(),
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint.pt.")] = False,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Log the run to MLflow and register the model.")
    ] = True,
    cross_validate: Annotated[
        bool,
        typer.Option(
            "--cross-validate",
            help="Train every fold of the config's grouped cross-validation, pool their test parts into the "
            "card's cross_validated figures, and ship the test_fold's model (finished folds are kept).",
        ),
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="Folds trained at once, one thread each.")] = 2,
    config: ConfigOption = None,
) -> None:
    """Train a model, choose its operating points on held-out data, write it with its model card,
    and (by default) record the run in MLflow and register the model there, unpromoted."""
    from training.config import load_config
    from training.crossval import cross_validate as cross_validated
    from training.train import run

    configure_logging()
    found = settings(config)
    cfg = load_config(training_config, *(overlays or []))
    progress = ProgressBar().training
    if register:
        from training.tracking import train_and_register

        folds = jobs if cross_validate else 0
        tracked = train_and_register(
            found, cfg, data, out, progress, resume=resume, cross_validate_jobs=folds
        )
        card = tracked.card
        typer.echo(
            f"MLflow run {tracked.run_id}; registered as {cfg.pipeline.registered_name} version "
            f"{tracked.registered_version} (not promoted: 'triage models promote {cfg.pipeline} "
            f"{tracked.registered_version}')",
            err=True,
        )
    elif cross_validate:
        card = cross_validated(cfg, data, out, jobs)
    else:
        card = run(cfg, data, out, progress, resume=resume)
    shown = {"metrics": card.metrics, "cross_validated": card.cross_validated}
    typer.echo(json.dumps({k: {n: m.model_dump() for n, m in v.items()} for k, v in shown.items()}, indent=2))


def _model_and_samples(
    found: Settings, model: str, manifest: Path, split: str | None
) -> tuple[Path, LoadedModel, list[Sample]]:
    from inference import registry
    from inference.model import ModelUnavailable, load_model, pick_device
    from triage.manifests import ManifestError, read_manifest

    try:
        folder = registry.resolve(found, model)
        loaded = load_model(folder, pick_device(), found.onnx_cache_dir)
        samples = read_manifest(manifest, loaded.card.pipeline.modality)
    except (ValueError, ModelUnavailable, ManifestError) as error:
        fail(error)
    return folder, loaded, [s for s in samples if s.split == split] if split else samples


def evaluate(
    model: ModelArgument,
    manifest: ManifestArgument,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json and report.html.")] = Path(
        "evaluation"
    ),
    split: Annotated[str | None, typer.Option("--split", help="Only rows of this split (e.g. test).")] = None,
    log: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the report to MLflow.")] = True,
    config: ConfigOption = None,
) -> None:
    """Measure a model on a labelled manifest: AUROC with bootstrap CIs, sensitivity, specificity,
    PPV and NPV at its operating points, FROC and mAP@0.5 for boxes, calibration, the 1-10 score
    and the screening workload, each per subgroup; a JSON and an HTML report."""
    from evaluation import report
    from evaluation.evaluate import figures, predict

    configure_logging()
    found = settings(config)
    _, loaded, samples = _model_and_samples(found, model, manifest, split)
    predictions = predict(loaded, samples, ProgressBar().counted)
    for reason in predictions.skipped:
        typer.echo(f"skipped {reason}", err=True)
    figures_found = figures(loaded.card, predictions, manifest, found.single_read_max_score)
    json_path, html_path = report.write(figures_found, out)
    headline = figures_found.headline()
    if log:
        from training.tracking import log_run

        name = f"{loaded.card.name} {loaded.card.version}"
        run_id = log_run(
            found, loaded.card.pipeline, f"evaluate {name} on {manifest.name}",
            {"kind": "evaluation", "model": name}, headline, (json_path, html_path),
        )  # fmt: skip
        typer.echo(f"MLflow run {run_id}", err=True)
    for metric, value in headline.items():
        typer.echo(f"{metric}\t{value:.4f}")
    for row in figures_found.workload:
        typer.echo(
            f"single read <= {row.single_read_max_score}: {row.single_read_share:.0%} single, "
            f"{row.reads_per_1000_exams:.0f} reads per 1000, {row.cancers_in_single_read_arm} of "
            f"{row.cancers} cancers in the single-read arm"
        )
    typer.echo(f"report: {html_path}")


def calibrate(
    model: ModelArgument,
    manifest: ManifestArgument,
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (weights + new card).")],
    version: Annotated[
        str, typer.Option("--version", help="The calibrated model's version (every result names it).")
    ],
    target_sensitivity: Annotated[float, typer.Option(min=0.5, max=0.999)] = 0.9,
    target_specificity: Annotated[float, typer.Option(min=0.5, max=0.999)] = 0.9,
    register: Annotated[bool, typer.Option("--register/--no-register", help="Register it in MLflow.")] = True,
    config: ConfigOption = None,
) -> None:
    """Choose DOUBT/FRACTURE thresholds (on 95 % lower bounds) or the 1-10 cut-points on a site's
    labelled set, measure them on its held-out exams, and write them into a new model card."""
    from evaluation.calibrate import calibrate as run_calibration

    configure_logging()
    found = settings(config)
    folder, loaded, samples = _model_and_samples(found, model, manifest, None)
    try:
        card = run_calibration(
            loaded, folder, samples, manifest, out, version, target_sensitivity, target_specificity
        )
    except ValueError as error:
        fail(error)
    typer.echo(json.dumps({name: metric.model_dump() for name, metric in card.metrics.items()}, indent=2))
    if register:
        from inference import registry
        from training.tracking import log_run

        metrics = {name: metric.value for name, metric in card.metrics.items()}
        tags = {"kind": "calibration", "source": str(folder)}
        run_id = log_run(
            found, card.pipeline, f"calibrate {card.name} {card.version}", tags, metrics, model_folder=out
        )
        try:
            number = registry.register(found, out, run_id)
        except registry.PromotionRefused as error:
            fail(error)
        typer.echo(f"registered as {card.pipeline.registered_name} version {number}", err=True)


def compare(
    model_a: ModelArgument,
    model_b: ModelArgument,
    manifest: ManifestArgument,
    split: Annotated[str | None, typer.Option("--split", help="Only rows of this split.")] = None,
    config: ConfigOption = None,
) -> None:
    """Two models on the same exams: their AUROCs, the difference with DeLong's standard error,
    95 % interval and p-value."""
    from evaluation.evaluate import exams, predict
    from evaluation.metrics import delong_test

    configure_logging("WARNING")
    found = settings(config)
    _, first, samples = _model_and_samples(found, model_a, manifest, split)
    _, second, _ = _model_and_samples(found, model_b, manifest, split)
    if first.card.pipeline != second.card.pipeline:
        raise typer.BadParameter("the two models belong to different pipelines")
    a = exams(predict(first, samples).images, first.card.pipeline)
    b = exams(predict(second, samples).images, second.card.pipeline)
    result = delong_test([e.label for e in a], [e.probability for e in a], [e.probability for e in b])
    typer.echo(json.dumps({"exams": len(a), **result}, indent=2))
