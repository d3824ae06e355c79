"""Outcomes the hospital's systems sent over HL7: list them, by state (UNMATCHED: to sort out)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from triage.cli.common import ConfigOption, fail, open_database, settings
from triage.records.inbound import InboundState

app = typer.Typer(no_args_is_help=True, help="Outcomes received over HL7.")


@app.command("list")
def outcomes_list(
    state: Annotated[InboundState | None, typer.Option(help="Only this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 200,
    config: ConfigOption = None,
) -> None:
    """Newest first: id, sender, control ID, state, study (by number), what was read or why not. No
    patient data (the message itself is in the API, audited)."""
    from triage.records import inbound

    with open_database(settings(config)).reading() as session:
        for m in inbound.listed(session, state, limit):
            study = f"study {m.study_id}" if m.study_id is not None else "no study"
            typer.echo(
                f"{m.id}\t{m.sending_application}\t{m.control_id or '-'}\t{m.state}\t{study}\t{m.detail}"
            )


@app.command("interval-cancers")
def outcomes_interval_cancers(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="CSV: patient_id,diagnosis_date.")
    ],
    config: ConfigOption = None,
) -> None:
    """Record a screening programme's interval cancers, each on the woman's last screen before it
    (within two years); rows that match no screen are listed by line (audited)."""
    from triage.records import interval_cancers
    from triage.records.db import utcnow

    found = settings(config)
    with open_database(found).session() as session:
        try:
            report = interval_cancers.import_csv(
                session, file.read_text(encoding="utf-8"), f"cli:{getpass.getuser()}", found, utcnow()
            )
        except ValueError as error:
            fail(error)
    typer.echo(f"{report.matched} interval cancer(s) recorded")
    for why in report.unmatched:
        typer.echo(why, err=True)
