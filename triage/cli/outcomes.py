"""Outcomes the hospital's systems sent over HL7: list them, by state (UNMATCHED: to sort out)."""

from __future__ import annotations

from typing import Annotated

import typer

from triage.cli.common import ConfigOption, open_database, settings
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
