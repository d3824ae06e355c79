"""The one ``triage`` command: the service's processes, DICOM tools, accounts, data, models.

Each module here is thin: it parses, calls the package that does the work, and prints.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from triage.cli import (
    accounts,
    audit,
    conformance,
    data,
    decisions,
    dicom,
    ml,
    models,
    outbound,
    outcomes,
    results,
    service,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
COMMANDS: tuple[Callable[..., None], ...] = (
    service.serve, service.listener, service.worker, service.api,
    ml.train, ml.evaluate, ml.calibrate, ml.compare,
    data.manifest, dicom.send, dicom.echo, conformance.conformance,
)  # fmt: skip
for command in COMMANDS:
    app.command()(command)
app.add_typer(accounts.app, name="users")
app.add_typer(models.app, name="models")
app.add_typer(data.labels_app, name="labels")
app.add_typer(results.app, name="results")
app.add_typer(outbound.app, name="outbound")
app.add_typer(decisions.app, name="decisions")
app.add_typer(outcomes.app, name="outcomes")
app.add_typer(audit.app, name="audit")


def main() -> None:
    app()
