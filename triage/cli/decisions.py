"""The decisions that let a reader do less: their switches and live evidence; an admin switches one
off or resumes it (audited, with a reason; acts on the next study). Enabling one against a model's
evidence, or moving the single-reading threshold, takes two admins: one proposes (the what-if on
the site's own recent studies comes back), another approves; ending such an override takes one."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from triage.cli.common import ConfigOption, fail, open_database, settings
from triage.outcomes import Decision
from triage.pipelines import Pipeline

app = typer.Typer(
    no_args_is_help=True,
    help="Decisions: their switches and live evidence; changes that two admins make.",
)
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


@app.command("propose")
def decisions_propose(
    pipeline: PipelineArgument,
    decision: Annotated[Decision, typer.Argument(help="rule_out or boxes (fracture), single_read (breast).")],
    reason: ReasonOption,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="NAME:VERSION the decision is enabled for against its evidence (rule_out and boxes:"
            " required; single_read: optional, else the threshold alone moves).",
        ),
    ] = "",
    threshold: Annotated[
        int | None, typer.Option("--threshold", min=0, max=10, help="single_read: the new threshold.")
    ] = None,
    effective_at: Annotated[
        datetime | None,
        typer.Option("--effective-at", help="When it takes effect once approved (UTC); default now."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Propose a change; prints its number and its what-if. Nothing changes until a second admin
    approves it (``triage decisions approve N``, or on the page)."""
    from triage.records import decision_changes
    from triage.records.db import utcnow

    name, _, version = model.partition(":")
    if model and not (name and version):
        fail("--model takes NAME:VERSION")
    found = settings(config)
    now = utcnow()
    if effective_at is not None and effective_at.tzinfo is None:  # the help says UTC
        effective_at = effective_at.replace(tzinfo=UTC)
    with open_database(found).session() as session:
        try:
            row = decision_changes.propose(
                session, pipeline=pipeline, decision=decision, model=(name, version) if model else None,
                single_read_max_score=threshold, effective_at=effective_at or now, reason=reason,
                actor=f"cli:{getpass.getuser()}", settings=found, now=now, source="cli",
            )  # fmt: skip
        except ValueError as error:
            fail(error)
        typer.echo(f"change {row.id} proposed: {decision_changes.describe(row)}")
        typer.echo(json.dumps(row.what_if, indent=2))
        typer.echo(f"a second admin approves it with: triage decisions approve {row.id}")


@app.command("approve")
def decisions_approve(
    change: Annotated[int, typer.Argument(min=1, help="The change's number.")],
    config: ConfigOption = None,
) -> None:
    """Approve another admin's proposal: in force from its stated time (the proposer is refused)."""
    from triage.records import decision_changes
    from triage.records.db import utcnow

    with open_database(settings(config)).session() as session:
        try:
            row = decision_changes.approve(session, change, f"cli:{getpass.getuser()}", utcnow(), "cli")
        except (LookupError, PermissionError, ValueError) as error:
            fail(error, code=1)
        typer.echo(
            f"change {row.id} approved: {decision_changes.describe(row)}, "
            f"from {row.effective_at:%Y-%m-%d %H:%M} UTC"
        )


@app.command("changes")
def decisions_changes(config: ConfigOption = None) -> None:
    """Proposed and approved changes, newest first, each with its what-if."""
    from triage.records import decision_changes

    with open_database(settings(config)).reading() as session:
        for row in decision_changes.listed(session):
            approved = f"approved by {row.approved_by}" if row.approved_by else "awaiting a second admin"
            typer.echo(
                f"{row.id}\t{decision_changes.describe(row)}\tfrom {row.effective_at:%Y-%m-%d %H:%M}\t"
                f"proposed by {row.proposed_by}\t{approved}\t{json.dumps(row.what_if)}"
            )


@app.command("end-override")
def decisions_end_override(
    model_name: Annotated[str, typer.Argument(help="The model's name, as its card gives it.")],
    model_version: Annotated[str, typer.Argument(help="The model's version, as its card gives it.")],
    decision: Annotated[Decision, typer.Argument(help="rule_out, single_read or boxes.")],
    reason: ReasonOption,
    config: ConfigOption = None,
) -> None:
    """End a decision enabled against the evidence: the evidence decides again from the next study."""
    from triage.records import overrides
    from triage.records.db import utcnow

    actor = f"cli:{getpass.getuser()}"
    with open_database(settings(config)).session() as session:
        ended = overrides.revoke(
            session, model_name, model_version, decision, actor, utcnow(), "cli", reason=reason
        )
    if not ended:
        fail("no such override in force", code=1)
    typer.echo(f"{decision.label} override ended for {model_name} {model_version}")
