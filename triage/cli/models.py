"""Registered models: list, promote, roll back, shadow mode and its report, a site's own model
imported. Every change is audited (decisions enabled against a model's evidence: ``triage decisions``)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated

import typer

from triage.cli.common import ConfigOption, fail, open_database, settings
from triage.pipelines import Pipeline
from triage.records.audit_actions import AuditAction
from triage.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Registered models: list, promote, roll back.")
PipelineArgument = Annotated[Pipeline, typer.Argument(help="fracture or breast.")]


def _audit(found: Settings, action: AuditAction, detail: str) -> None:
    from triage.records import store
    from triage.records.db import utcnow

    with open_database(found).session() as session:
        store.audit(
            session,
            actor=f"cli:{getpass.getuser()}",
            action=action,
            source="cli",
            now=utcnow(),
            detail=detail,
        )


@app.command("list")
def models_list(config: ConfigOption = None) -> None:
    """Every registered version: its card, aliases, and whether its operating points are validated."""
    from inference import registry

    for info in registry.versions(settings(config)):
        typer.echo(
            f"{info.pipeline}\tv{info.version}\t{info.card_name} {info.card_version}\t"
            f"{','.join(info.aliases) or '-'}\t{'validated' if info.validated else 'NOT validated'}\t"
            f"run {info.run_id}"
        )


@app.command("promote")
def models_promote(
    pipeline: PipelineArgument,
    version: Annotated[str, typer.Argument(help="Registered version.")],
    config: ConfigOption = None,
) -> None:
    """Put a registered version into service; workers pick it up within model_check_seconds."""
    from inference import registry

    found = settings(config)
    try:
        before = registry.promote(found, pipeline, version)
    except (registry.PromotionRefused, KeyError) as error:
        fail(error)
    detail = f"{pipeline.registered_name} v{version} promoted (was {before or 'the bundled model'})"
    _audit(found, AuditAction.MODEL_PROMOTED, detail)
    typer.echo(detail)


@app.command("shadow")
def models_shadow(
    pipeline: PipelineArgument,
    version: Annotated[str | None, typer.Argument(help="Registered version; leave out with --off.")] = None,
    off: Annotated[bool, typer.Option("--off", help="End shadow mode.")] = False,
    config: ConfigOption = None,
) -> None:
    """Run a registered version beside production on live studies: its results are stored for
    'triage models shadow-report', never routed, reported or sent."""
    from inference import registry

    found = settings(config)
    if off == (version is not None):
        raise typer.BadParameter("give a VERSION, or --off")
    registry.set_shadow(found, pipeline, None if off else version)
    detail = f"{pipeline.registered_name} shadow mode " + ("ended" if off else f"on v{version}")
    _audit(found, AuditAction.MODEL_SHADOW, detail)
    typer.echo(detail)


@app.command("shadow-report")
def models_shadow_report(pipeline: PipelineArgument, config: ConfigOption = None) -> None:
    """Compare the shadow model's results with production's, and both with radiologists' readings."""
    from evaluation.shadow import report

    with open_database(settings(config)).session() as session:
        typer.echo(json.dumps(report(session, pipeline), indent=2))


@app.command("rollback")
def models_rollback(pipeline: PipelineArgument, config: ConfigOption = None) -> None:
    """Return production to the version promoted before the current one (or the bundled model)."""
    from inference import registry

    found = settings(config)
    try:
        left, now = registry.rollback(found, pipeline)
    except registry.PromotionRefused as error:
        fail(error)
    detail = f"{pipeline.registered_name} v{left} rolled back to {f'v{now}' if now else 'the bundled model'}"
    _audit(found, AuditAction.MODEL_ROLLED_BACK, detail)
    typer.echo(detail)


@app.command("import")
def models_import(
    network: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="The network: an .onnx file, or a state dict (.pt)."
        ),
    ],
    card: Annotated[
        Path,
        typer.Option(
            "--card", exists=True, dir_okay=False, help="Its supplier's card (JSON), hash included."
        ),
    ],
    manifest: Annotated[
        Path,
        typer.Option("--manifest", exists=True, dir_okay=False, help="The site's labelled manifest (CSV)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write (network, card, evaluation).")],
    target_sensitivity: Annotated[float, typer.Option(min=0.5, max=0.999)] = 0.9,
    target_specificity: Annotated[float, typer.Option(min=0.5, max=0.999)] = 0.9,
    register: Annotated[bool, typer.Option("--register/--no-register", help="Register it in MLflow.")] = True,
    config: ConfigOption = None,
) -> None:
    """Bring a site's own model: check its hash, calibrate its operating points (or its 1-10 score)
    on the site's manifest, measure it on the manifest's held-out exams, and register it unpromoted.
    The evidence gate then enables only what the site's own exams support."""
    from evaluation import report
    from evaluation.calibrate import held_out
    from evaluation.evaluate import figures, predict
    from evaluation.imported import import_model
    from inference.model import load_model, pick_device
    from triage.logs import configure_logging
    from triage.manifests import ManifestError, read_manifest

    configure_logging()
    found = settings(config)
    try:
        pipeline = Pipeline(json.loads(card.read_text(encoding="utf-8")).get("pipeline", ""))
        samples = read_manifest(manifest, pipeline.modality)
        written = import_model(network, card, samples, manifest, out, target_sensitivity, target_specificity)
    except (ValueError, AttributeError, ManifestError) as error:  # ImportRefused is a ValueError
        fail(error)
    loaded = load_model(out, pick_device(), found.onnx_cache_dir)
    measured = figures(written, predict(loaded, held_out(samples)), manifest, found.single_read_max_score)
    json_path, html_path = report.write(measured, out / "evaluation")
    typer.echo(json.dumps(measured.headline(), indent=2))
    typer.echo(f"report: {html_path}", err=True)
    _audit(
        found, AuditAction.MODEL_IMPORTED, f"{written.name} {written.version} imported from {network.name}"
    )
    if register:
        from inference import registry
        from training.tracking import log_run

        tags = {"kind": "import", "source": network.name}
        run_id = log_run(
            found, written.pipeline, f"import {written.name} {written.version}", tags, measured.headline(),
            (json_path, html_path), model_folder=out,
        )  # fmt: skip
        try:
            number = registry.register(found, out, run_id)
        except registry.PromotionRefused as error:
            fail(error)
        typer.echo(
            f"registered as {written.pipeline.registered_name} version {number} (not promoted)", err=True
        )
