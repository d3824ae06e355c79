"""The audit log: seal what is pending into the hash chain, verify the chain."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from triage.cli.common import ConfigOption, open_database, settings
from triage.records import audit_chain

app = typer.Typer(no_args_is_help=True, help="The audit log's hash chain.")


@app.command("verify")
def audit_verify(config: ConfigOption = None) -> None:
    """Recompute every seal from its events; exit 1 naming each break (an event changed, removed or
    added below a seal, a seal edited). Prints the head digest: keep it elsewhere to rule out the
    newest seals being cut off together with their events."""
    database = open_database(settings(config))
    with database.reading() as session:
        found = audit_chain.verify(session)
    typer.echo(
        f"{found.seals} seals over {found.sealed_events} events; "
        f"{found.unsealed_events} events not sealed yet; head {found.head_digest}"
    )
    for problem in found.problems:
        typer.echo(f"BROKEN: {problem}", err=True)
    if not found.intact:
        raise typer.Exit(1)
    typer.echo("the audit chain is intact")


@app.command("seal")
def audit_seal(
    grace_seconds: Annotated[
        float, typer.Option(help="Seal only events at least this old (an open transaction may commit).")
    ] = audit_chain.SEAL_GRACE.total_seconds(),
    config: ConfigOption = None,
) -> None:
    """Seal every pending audit event now (the leading listener does this every few seconds)."""
    database = open_database(settings(config))
    sealed = 0
    while True:
        with database.session() as session:
            made = audit_chain.seal(session, database.now(), timedelta(seconds=grace_seconds))
        if made is None:
            break
        sealed += made.events
    typer.echo(f"sealed {sealed} events")
