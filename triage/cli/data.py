"""Labelled data: public sets written as manifests, and the radiologists' readings exported."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from triage.cli.common import ConfigOption, fail, open_database, settings
from triage.records.audit_actions import AuditAction

labels_app = typer.Typer(no_args_is_help=True, help="Radiologists' readings as training labels.")


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
    from training.adapters import ADAPTERS
    from triage.manifests import ManifestError, write_manifest

    if adapter not in ADAPTERS:
        raise typer.BadParameter(f"{adapter!r} is not an adapter: use {', '.join(ADAPTERS)}")
    try:
        count = write_manifest(ADAPTERS[adapter](source), out)
    except (ManifestError, KeyError, OSError) as error:
        fail(f"{source} cannot be read as {adapter}: {error}")
    typer.echo(f"{count} images written to {out}")


@labels_app.command("export")
def labels_export(
    out: Annotated[Path, typer.Option("--out", help="Folder to write: images/, labels.json, manifest.csv.")],
    config: ConfigOption = None,
) -> None:
    """Export every reading with its images, de-identified (PS3.15 basic profile), as a manifest."""
    from training.adapters import worklist_feedback
    from triage.manifests import write_manifest
    from triage.records import store
    from triage.records.db import utcnow
    from worklist.labels import WeakLabelKey, export_folder, label_key

    found = settings(config)
    try:
        key = label_key(found.home)
    except WeakLabelKey as error:
        fail(error)
    with open_database(found).session() as session:
        count, left_out = export_folder(
            session, key, found.storage_dir, out, found.labels_export_unflagged_images
        )
        store.audit(
            session,
            actor=f"cli:{getpass.getuser()}",
            action=AuditAction.LABELS_EXPORTED,
            source="cli",
            now=utcnow(),
            detail=f"{count} labels to {out}",
        )
    for reason in left_out:
        typer.echo(f"left out {reason}", err=True)
    rows = write_manifest(worklist_feedback(out), out / "manifest.csv")
    typer.echo(f"{count} readings, {rows} images written to {out}")
