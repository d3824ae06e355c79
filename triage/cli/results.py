"""AI results already recorded: withdraw the one that acts on a study."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from sqlalchemy import select

from triage.cli.common import ConfigOption, fail, open_database, settings
from triage.records import withdrawals
from triage.records.tables import Study

app = typer.Typer(no_args_is_help=True, help="AI results already recorded.")


@app.command("retract")
def results_retract(
    study_instance_uid: Annotated[str, typer.Argument(help="The study's Study Instance UID.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the AI result must not act (audited).")],
    config: ConfigOption = None,
) -> None:
    """Withdraw the AI verdict that acts on a study: it goes NOT ANALYSED (read as usual), and what
    the PACS has is superseded by a NOT ANALYSED SR and rejected by an IOCM note."""
    if len(reason.strip()) < 3:
        fail("--reason must say why, in 3 characters or more", 2)
    database = open_database(settings(config))
    actor = f"cli:{getpass.getuser()}"
    with database.session() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == study_instance_uid)).first()
        if study is None:
            fail(f"no study {study_instance_uid}", 1)
        withdrawn = withdrawals.retract(session, study.id, reason.strip(), database.now(), actor, "cli")
    if withdrawn is None:
        fail("no AI verdict acts on this study; nothing to retract", 1)
    typer.echo(
        f"retracted version {withdrawn.version_number}"
        + ("; the PACS gets a superseding SR and a rejection note" if withdrawn.superseded_at_pacs else "")
    )
