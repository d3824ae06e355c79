"""The one ``triage`` command: serve and its parts, accounts, labels, training, models, DICOM tools."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from triage.logs import configure_logging
from triage.settings import DicomPeer, Settings, check_ae_title, load_settings

logger = logging.getLogger(__name__)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", envvar="TRIAGE_CONFIG", help="YAML file of settings; TRIAGE_* variables win."),
]
CallingAe = Annotated[str, typer.Option("--calling-ae", help="Our AE title in the association.")]
_STOP_GRACE_SECONDS = 30.0


def _settings(config: Path | None) -> Settings:
    """Build the settings once, or exit with the reason in plain words."""
    try:
        return load_settings(config)
    except (ValidationError, FileNotFoundError) as error:
        typer.echo(f"triage: invalid settings:\n{error}", err=True)
        raise typer.Exit(2) from error


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


@app.command()
def listener(config: ConfigOption = None) -> None:
    """Run the DICOM listener, study monitor and outbox publisher, and PACS delivery."""
    from delivery import pacs
    from dicom_node.listener import Listener
    from dicom_node.scp import AllowListEmpty

    configure_logging()
    settings = _settings(config)
    node = Listener(settings)
    try:
        node.start()
    except AllowListEmpty as error:
        typer.echo(f"triage: {error}", err=True)
        raise typer.Exit(2) from error
    sender = pacs.start(settings, node.database)
    _wait_for_signal()
    if sender is not None:
        sender.stop()
    node.stop()


@app.command()
def worker(
    config: ConfigOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Run a Celery worker that analyses queued studies."""
    from inference.worker import ModelPipelines, make_worker_app
    from triage.messages import QUEUE
    from triage.records.db import Database, migrate

    configure_logging()
    settings = _settings(config)
    migrate(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    celery_app = make_worker_app(settings, database, ModelPipelines(settings), concurrency)
    celery_app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            "-Q",
            QUEUE,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=INFO",
        ]
    )


@app.command()
def api(config: ConfigOption = None) -> None:
    """Run the web API and the worklist page."""
    import uvicorn

    from triage.records.db import Database, migrate
    from worklist.app import create_app
    from worklist.auth import Unprotected, bootstrap_admin, check_exposure, is_loopback

    configure_logging()
    settings = _settings(config)
    migrate(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    try:
        check_exposure(settings, database)
    except Unprotected as error:
        typer.echo(f"triage: {error}", err=True)
        raise typer.Exit(2) from error
    created = bootstrap_admin(settings, database)
    if created is not None:
        logger.warning(
            "first start: created the account 'admin' (role admin); its password is in %s. "
            "Add radiologists with 'triage users add NAME --role radiologist'.",
            created,
        )
    if not is_loopback(settings.api_host) and settings.api_tls_certificate is None:
        logger.warning(
            "serving plain HTTP on %s: put a TLS proxy in front or set TRIAGE_API_TLS_CERTIFICATE",
            settings.api_host,
        )
    uvicorn.run(
        create_app(database, settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,  # uvicorn's access log prints query strings, which may hold patient names
        ssl_certfile=settings.api_tls_certificate,
        ssl_keyfile=settings.api_tls_private_key,
    )


users_app = typer.Typer(no_args_is_help=True, help="Local accounts of the web API.")
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="The new account's user name.")],
    role: Annotated[
        list[str], typer.Option("--role", help="radiologist, ml_engineer or admin; repeat for several.")
    ],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Create a local account; the password (12 characters or more) is asked for, never an argument."""
    from triage.records.db import Database, migrate
    from worklist.auth import AccountError, add_user, parse_roles

    settings = _settings(config)
    password = (
        sys.stdin.readline().rstrip("\n")
        if password_stdin
        else typer.prompt("password", hide_input=True, confirmation_prompt=True)
    )
    migrate(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    try:
        with database.session() as session:
            add_user(session, username, password, parse_roles(role), actor="cli")
    except AccountError as error:
        typer.echo(f"triage: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(f"created {username} ({', '.join(role)})")


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """List local accounts."""
    from sqlalchemy import select

    from triage.records.db import Database, migrate
    from triage.records.tables import User

    settings = _settings(config)
    migrate(settings.resolved_database_url)
    with Database(settings.resolved_database_url).session() as session:
        for user in session.scalars(select(User).order_by(User.username)):
            typer.echo(f"{user.username}\t{user.roles}\t{'active' if user.active else 'deactivated'}")


@users_app.command("deactivate")
def users_deactivate(username: str, config: ConfigOption = None) -> None:
    """Deactivate an account and end its sessions."""
    from triage.records.db import Database, migrate
    from worklist.auth import deactivate_user

    settings = _settings(config)
    migrate(settings.resolved_database_url)
    with Database(settings.resolved_database_url).session() as session:
        if not deactivate_user(session, username, actor="cli"):
            typer.echo(f"triage: no user {username!r}", err=True)
            raise typer.Exit(1)
    typer.echo(f"deactivated {username}")


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run listener, worker and API together on one machine; Ctrl-C stops all three."""
    from triage.records.db import migrate

    configure_logging()
    settings = _settings(config)
    migrate(settings.resolved_database_url)  # once here, so the three do not race to create it
    extra = ["--config", str(config)] if config else []
    children = {
        name: subprocess.Popen([sys.executable, "-m", "triage", name, *extra])
        for name in ("listener", "worker", "api")
    }
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    failed = None
    while not stopping.wait(0.5):
        failed = next((name for name, child in children.items() if child.poll() is not None), None)
        if failed:
            logger.error(
                "the %s stopped unexpectedly (exit %s); stopping the others",
                failed,
                children[failed].returncode,
            )
            break
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    for child in children.values():
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    raise typer.Exit(1 if failed else 0)


@app.command()
def train(
    config: Annotated[
        Path, typer.Argument(exists=True, help="Base training YAML, e.g. configs/train/fracture.yaml.")
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
) -> None:
    """Train a model, choose its operating points on held-out data, write it with its model card,
    and (by default) record the run in MLflow and register the model there, unpromoted."""
    from training.config import load_config
    from training.train import run

    configure_logging()
    cfg = load_config(config, *(overlays or []))

    def progress(epoch: int, epochs: int, loss: float, elapsed: float) -> None:
        eta = elapsed / epoch * (epochs - epoch)
        typer.echo(
            f"epoch {epoch}/{epochs}  loss {loss:.4f}  elapsed {elapsed:.0f} s  eta {eta:.0f} s", err=True
        )

    if register:
        from training.tracking import train_and_register

        tracked = train_and_register(_settings(None), cfg, data, out, progress, resume=resume)
        card = tracked.card
        typer.echo(
            f"MLflow run {tracked.run_id}; registered as triage-{cfg.pipeline} version "
            f"{tracked.registered_version} (not promoted: 'triage models promote {cfg.pipeline} "
            f"{tracked.registered_version}')",
            err=True,
        )
    else:
        card = run(cfg, data, out, progress, resume=resume)
    typer.echo(json.dumps({name: metric.model_dump() for name, metric in card.metrics.items()}, indent=2))


ModelArgument = Annotated[
    str, typer.Argument(help="A model folder, PIPELINE@ALIAS (fracture@production) or PIPELINE/VERSION.")
]
ManifestArgument = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A manifest CSV.")]


def _model_and_samples(
    model: str, manifest: Path, split: str | None
) -> tuple[Settings, Path, Any, list[Any]]:
    from inference import registry
    from inference.model import ModelUnavailable, load_model, pick_device
    from training.manifest import ManifestError, read_manifest

    settings = _settings(None)
    try:
        folder = registry.resolve(settings, model)
        loaded = load_model(folder, pick_device())
        samples = read_manifest(manifest, "DX" if loaded.card.pipeline == "fracture" else "MG")
    except (ValueError, ModelUnavailable, ManifestError) as error:
        typer.echo(f"triage: {error}", err=True)
        raise typer.Exit(2) from error
    if split:
        samples = [s for s in samples if s.split == split]
    return settings, folder, loaded, samples


@app.command()
def evaluate(
    model: ModelArgument,
    manifest: ManifestArgument,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json and report.html.")] = Path(
        "evaluation"
    ),
    split: Annotated[str | None, typer.Option("--split", help="Only rows of this split (e.g. test).")] = None,
    log: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log the report to MLflow.")] = True,
) -> None:
    """Measure a model on a labelled manifest: AUROC with bootstrap CIs, sensitivity, specificity,
    PPV and NPV at its operating points, FROC and mAP@0.5 for boxes, calibration, the 1-10 score
    and the screening workload, each per subgroup; a JSON and an HTML report."""
    from evaluation import report
    from evaluation.evaluate import figures, flat_metrics, predict

    configure_logging()
    settings, _, loaded, samples = _model_and_samples(model, manifest, split)
    found = figures(loaded.card, predict(loaded, samples), manifest, settings.single_read_max_score)
    json_path, html_path = report.write(found, out)
    headline = flat_metrics(found)
    if log:
        from inference import registry

        mlflow_client = registry.client(settings)
        run_id = mlflow_client.create_run(
            registry.experiment_id(settings, loaded.card.pipeline),
            run_name=f"evaluate {loaded.card.name} {loaded.card.version} on {manifest.name}",
            tags={"kind": "evaluation", "model": f"{loaded.card.name} {loaded.card.version}"},
        ).info.run_id
        for name, value in headline.items():
            mlflow_client.log_metric(run_id, name, value)
        mlflow_client.log_artifact(run_id, str(json_path))
        mlflow_client.log_artifact(run_id, str(html_path))
        mlflow_client.set_terminated(run_id, "FINISHED")
        typer.echo(f"MLflow run {run_id}", err=True)
    for name, value in headline.items():
        typer.echo(f"{name}\t{value:.4f}")
    for row in found.get("workload", []):
        typer.echo(
            f"single read <= {row['single_read_max_score']}: {row['single_read_share']:.0%} single, "
            f"{row['reads_per_1000_exams']:.0f} reads per 1000, {row['cancers_in_single_read_arm']} of "
            f"{row['cancers']} cancers in the single-read arm"
        )
    typer.echo(f"report: {html_path}")


@app.command()
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
) -> None:
    """Choose DOUBT/FRACTURE thresholds (on 95 % lower bounds) or the 1-10 cut-points on a site's
    labelled set, measure them on its held-out exams, and write them into a new model card."""
    from evaluation.calibrate import calibrate as run_calibration

    configure_logging()
    settings, folder, loaded, samples = _model_and_samples(model, manifest, None)
    try:
        card = run_calibration(
            loaded, folder, samples, manifest, out, version, target_sensitivity, target_specificity
        )
    except ValueError as error:
        typer.echo(f"triage: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(json.dumps({name: metric.model_dump() for name, metric in card.metrics.items()}, indent=2))
    if register:
        from inference import registry

        mlflow_client = registry.client(settings)
        run_id = mlflow_client.create_run(
            registry.experiment_id(settings, card.pipeline),
            run_name=f"calibrate {card.name} {card.version}",
            tags={"kind": "calibration", "source": str(folder)},
        ).info.run_id
        for name, metric in card.metrics.items():
            mlflow_client.log_metric(run_id, name, metric.value)
        mlflow_client.log_artifacts(run_id, str(out), artifact_path="model")
        mlflow_client.set_terminated(run_id, "FINISHED")
        try:
            number = registry.register(settings, out, run_id)
        except registry.PromotionRefused as error:
            typer.echo(f"triage: {error}", err=True)
            raise typer.Exit(2) from error
        typer.echo(f"registered as triage-{card.pipeline} version {number}", err=True)


@app.command()
def compare(
    model_a: ModelArgument,
    model_b: ModelArgument,
    manifest: ManifestArgument,
    split: Annotated[str | None, typer.Option("--split", help="Only rows of this split.")] = None,
) -> None:
    """Two models on the same exams: their AUROCs, the difference with DeLong's standard error,
    95 % interval and p-value."""
    from evaluation.evaluate import exams, predict
    from evaluation.metrics import delong_test

    configure_logging("WARNING")
    _, _, first, samples = _model_and_samples(model_a, manifest, split)
    _, _, second, _ = _model_and_samples(model_b, manifest, split)
    if first.card.pipeline != second.card.pipeline:
        raise typer.BadParameter("the two models belong to different pipelines")
    a = exams(predict(first, samples), first.card.pipeline)
    b = exams(predict(second, samples), second.card.pipeline)
    result = delong_test([e.label for e in a], [e.probability for e in a], [e.probability for e in b])
    typer.echo(json.dumps({"exams": len(a), **result}, indent=2))


models_app = typer.Typer(no_args_is_help=True, help="Registered models: list, promote, roll back.")
app.add_typer(models_app, name="models")
Pipeline = Annotated[str, typer.Argument(help="fracture or breast.")]


def _audit_model_change(settings: Settings, action: str, detail: str) -> None:
    import getpass

    from triage.records.db import Database, migrate
    from triage.records.tables import AuditEvent

    migrate(settings.resolved_database_url)
    with Database(settings.resolved_database_url).session() as session:
        session.add(AuditEvent(actor=f"cli:{getpass.getuser()}", action=action, detail=detail))


@models_app.command("list")
def models_list(config: ConfigOption = None) -> None:
    """Every registered version: its card, aliases, and whether its operating points are validated."""
    from inference import registry

    settings = _settings(config)
    for info in registry.versions(settings):
        typer.echo(
            f"{info.pipeline}\tv{info.version}\t{info.card_name} {info.card_version}\t"
            f"{','.join(info.aliases) or '-'}\t{'validated' if info.validated else 'NOT validated'}\t"
            f"run {info.run_id}"
        )


@models_app.command("promote")
def models_promote(
    pipeline: Pipeline,
    version: Annotated[str, typer.Argument(help="Registered version.")],
    config: ConfigOption = None,
) -> None:
    """Put a registered version into service; workers pick it up within model_check_seconds."""
    from inference import registry

    settings = _settings(config)
    try:
        before = registry.promote(settings, pipeline, version)
    except (registry.PromotionRefused, KeyError) as error:
        typer.echo(f"triage: {error}", err=True)
        raise typer.Exit(2) from error
    detail = f"{registry.registered_name(pipeline)} v{version} promoted (was {before or 'the bundled model'})"
    _audit_model_change(settings, "model.promoted", detail)
    typer.echo(detail)


@models_app.command("shadow")
def models_shadow(
    pipeline: Pipeline,
    version: Annotated[str | None, typer.Argument(help="Registered version; leave out with --off.")] = None,
    off: Annotated[bool, typer.Option("--off", help="End shadow mode.")] = False,
    config: ConfigOption = None,
) -> None:
    """Run a registered version beside production on live studies: its results are stored for
    'triage models shadow-report', never routed, reported or sent."""
    from inference import registry

    settings = _settings(config)
    if off == (version is not None):
        raise typer.BadParameter("give a VERSION, or --off")
    registry.set_shadow(settings, pipeline, None if off else version)
    detail = f"{registry.registered_name(pipeline)} shadow mode " + ("ended" if off else f"on v{version}")
    _audit_model_change(settings, "model.shadow", detail)
    typer.echo(detail)


@models_app.command("shadow-report")
def models_shadow_report(pipeline: Pipeline, config: ConfigOption = None) -> None:
    """Compare the shadow model's results with production's, and both with radiologists' readings."""
    from evaluation.shadow import report
    from triage.records.db import Database, migrate

    settings = _settings(config)
    migrate(settings.resolved_database_url)
    with Database(settings.resolved_database_url).session() as session:
        typer.echo(json.dumps(report(session, pipeline), indent=2))


@models_app.command("rollback")
def models_rollback(pipeline: Pipeline, config: ConfigOption = None) -> None:
    """Return production to the version promoted before the current one (or the bundled model)."""
    from inference import registry

    settings = _settings(config)
    try:
        left, now = registry.rollback(settings, pipeline)
    except registry.PromotionRefused as error:
        typer.echo(f"triage: {error}", err=True)
        raise typer.Exit(2) from error
    target = f"v{now}" if now else "the bundled model"
    detail = f"{registry.registered_name(pipeline)} v{left} rolled back to {target}"
    _audit_model_change(settings, "model.rolled_back", detail)
    typer.echo(detail)


@app.command()
def manifest(
    adapter: Annotated[
        str,
        typer.Argument(
            help="fracatlas, mini_mias, mini_mias_abnormal, cbis_ddsm, vindr_mammo or worklist_feedback."
        ),
    ],
    source: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="The data set's folder.")],
    out: Annotated[Path, typer.Option("--out", help="Manifest CSV to write.")],
) -> None:
    """Write a public data set's (or the worklist's) labels as a triage manifest."""
    from training.manifest import ADAPTERS, ManifestError, write_manifest

    if adapter not in ADAPTERS:
        raise typer.BadParameter(f"{adapter!r} is not an adapter: use {', '.join(ADAPTERS)}")
    try:
        count = write_manifest(ADAPTERS[adapter](source), out)
    except (ManifestError, KeyError, OSError) as error:
        typer.echo(f"triage: {source} cannot be read as {adapter}: {error}", err=True)
        raise typer.Exit(2) from error
    typer.echo(f"{count} images written to {out}")


labels_app = typer.Typer(no_args_is_help=True, help="Radiologists' readings as training labels.")
app.add_typer(labels_app, name="labels")


@labels_app.command("export")
def labels_export(
    out: Annotated[Path, typer.Option("--out", help="Folder to write: images/, labels.json, manifest.csv.")],
    config: ConfigOption = None,
) -> None:
    """Export every reading with its images, de-identified (PS3.15 basic profile), as a manifest."""
    from training.manifest import worklist_feedback, write_manifest
    from triage.records.db import Database, migrate
    from triage.records.tables import AuditEvent
    from worklist.labels import export_folder, label_key

    settings = _settings(config)
    migrate(settings.resolved_database_url)
    with Database(settings.resolved_database_url).session() as session:
        count, left_out = export_folder(session, label_key(settings.home), settings.storage_dir, out)
        session.add(AuditEvent(actor="cli", action="labels.exported", detail=f"{count} labels to {out}"))
    for reason in left_out:
        typer.echo(f"left out {reason}", err=True)
    rows = write_manifest(worklist_feedback(out), out / "manifest.csv")
    typer.echo(f"{count} readings, {rows} images written to {out}")


@app.command()
def send(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="Files or folders to send.")],
    to: Annotated[str, typer.Option("--to", help="Destination as AE@host:port.")],
    calling_ae: CallingAe = "TRIAGESCU",
) -> None:
    """Send DICOM files to a peer with C-STORE."""
    from delivery.scu import send as send_files

    configure_logging("WARNING")
    results = send_files(paths, _peer(to), check_ae_title(calling_ae))
    for result in results:
        shown = "-" if result.status is None else f"0x{result.status:04X}"
        typer.echo(f"{shown} {result.detail}: {result.path}")
    failed = sum(not r.ok for r in results)
    typer.echo(f"{len(results) - failed} sent, {failed} failed")
    raise typer.Exit(1 if failed or not results else 0)


@app.command()
def echo(
    peer: Annotated[str, typer.Argument(help="Peer as AE@host:port.")],
    calling_ae: CallingAe = "TRIAGESCU",
) -> None:
    """Check a peer answers C-ECHO."""
    from delivery.scu import echo as send_echo

    configure_logging("WARNING")
    status = send_echo(_peer(peer), check_ae_title(calling_ae))
    if status is None:
        typer.echo(f"no association with {peer}", err=True)
        raise typer.Exit(1)
    typer.echo(f"C-ECHO status 0x{status:04X}")
    raise typer.Exit(0 if status == 0 else 1)


def _peer(text: str) -> DicomPeer:
    try:
        return DicomPeer.parse(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


def main() -> None:
    app()
