"""The decisions that let a reader do less: their switches and live evidence; an admin switches one
off or resumes it (audited, with a reason; acts on the next study)."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from triage.cli.common import ConfigOption, fail, open_database, settings
from triage.outcomes import Decision
from triage.pipelines import Pipeline

app = typer.Typer(no_args_is_help=True, help="Decisions switched off by the live evidence, and resumed.")
PipelineArgument = Annotated[Pipeline, typer.Argument(help="fracture or breast.")]
DecisionArgument = Annotated[Decision, typer.Argument(help="rule_out (fracture) or single_read (breast).")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why, in words the audit log keeps.")]


@app.command("list")
def decisions_list(config: ConfigOption = None) -> None:
    """Each decision: on or switched off (by whom, when, why), and its live evidence."""
    from triage.records import live_evidence, switches
    from triage.records.db import utcnow

    found = settings(config)
    with open_database(found).reading() as session:
        for state in switches.states(session):
            live = live_evidence.figure(session, state.decision, found, utcnow())
            switch = f"OFF since {state.at:%Y-%m-%d %H:%M}: {state.reason}" if state.off else "on"
            claim = f"{live.claim:.3f}" if live.claim is not None else "none"
            typer.echo(
                f"{state.pipeline}\t{state.decision}\t{switch}\tlive {live.hits}/{live.positives} "
                f"(95 % CI {live.ci95_low:.3f}-{live.ci95_high:.3f}), claim {claim}, "
                f"{live.discordances} discordance(s), model {live.model or '-'}"
            )


def _change(pipeline: Pipeline, decision: Decision, off: bool, reason: str, config: ConfigOption) -> None:
    from triage.records import switches
    from triage.records.db import utcnow

    actor = f"cli:{getpass.getuser()}"
    with open_database(settings(config)).session() as session:
        try:
            changed = switches.change(session, pipeline, decision, off, reason, actor, utcnow())
        except ValueError as error:
            fail(error)
    if not changed:
        fail(f"{pipeline} {decision.label} is already {'off' if off else 'on'}", code=1)
    typer.echo(f"{pipeline} {decision.label} {'switched off' if off else 'resumed'}")


@app.command("off")
def decisions_off(
    pipeline: PipelineArgument, decision: DecisionArgument, reason: ReasonOption, config: ConfigOption = None
) -> None:
    """Switch a decision off now: studies take the conservative path from the next one."""
    _change(pipeline, decision, True, reason, config)


@app.command("resume")
def decisions_resume(
    pipeline: PipelineArgument, decision: DecisionArgument, reason: ReasonOption, config: ConfigOption = None
) -> None:
    """Let the evidence gate decide again; the live evidence counts afresh from now."""
    _change(pipeline, decision, False, reason, config)
