"""What triage sends out: the DICOM objects for the PACS and the HL7 messages for the RIS."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from triage.cli.common import ConfigOption, fail, open_database, settings
from triage.records import outbound
from triage.records.tables import DeliveryState

app = typer.Typer(no_args_is_help=True, help="Objects for the PACS and HL7 messages for the RIS.")


@app.command("list")
def outbound_list(
    state: Annotated[DeliveryState | None, typer.Option(help="Only this state (FAILED: gave up).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 200,
    config: ConfigOption = None,
) -> None:
    """Newest first: destination, id, study, version, kind, state, attempts, last error (no patient
    data: studies by their number)."""
    database = open_database(settings(config))
    with database.session() as session:
        found = outbound.list_outbound(session, state, limit)
    for o in found:
        typer.echo(
            f"{o.destination}\t{o.id}\tstudy {o.study_id} v{o.version}\t{o.kind}\t{o.state}\t"
            f"{o.attempts} attempt(s)\t{o.last_error}"
        )


@app.command("resend")
def outbound_resend(
    destination: Annotated[outbound.Destination, typer.Argument(help="pacs or ris.")],
    item_id: Annotated[int, typer.Argument(help="The id `triage outbound list` shows.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is sent again (audited).")],
    config: ConfigOption = None,
) -> None:
    """Send a FAILED withdrawal object or HL7 message again, with fresh tries and deadline (a failed
    result object is refused: its failure withdrew its verdict)."""
    if len(reason.strip()) < 3:
        fail("--reason must say why, in 3 characters or more", 2)
    database = open_database(settings(config))
    actor = f"cli:{getpass.getuser()}"
    try:
        with database.session() as session:
            queued = outbound.resend(
                session, destination, item_id, reason.strip(), actor, "cli", database.now()
            )
    except LookupError as error:
        fail(str(error), 1)
    except outbound.NotResendable as error:
        fail(f"not sent again: {error}", 1)
    typer.echo(f"{queued.destination} {queued.id} ({queued.kind}) queued again")
