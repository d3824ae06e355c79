"""Local accounts of the web API: add, list, deactivate, set a password."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from sqlalchemy import select

from triage.cli.common import ConfigOption, fail, open_database, settings
from triage.records.accounts import AccountError, add_user, change_password, deactivate_user, parse_roles
from triage.records.tables import User

app = typer.Typer(no_args_is_help=True, help="Local accounts of the web API.")
_CLI = "cli"


def _password(from_stdin: bool, prompt: str) -> str:
    """A password from standard input's first line, or asked for twice, never an argument."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))


@app.command("add")
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
    found = settings(config)
    password = _password(password_stdin, "password")
    try:
        with open_database(found).session() as session:
            add_user(session, username, password, parse_roles(role), actor=_CLI, source=_CLI)
    except AccountError as error:
        fail(error)
    typer.echo(f"created {username} ({', '.join(role)})")


@app.command("list")
def users_list(config: ConfigOption = None) -> None:
    """List local accounts."""
    with open_database(settings(config)).session() as session:
        for user in session.scalars(select(User).order_by(User.username)):
            typer.echo(f"{user.username}\t{user.roles}\t{'active' if user.active else 'deactivated'}")


@app.command("deactivate")
def users_deactivate(username: str, config: ConfigOption = None) -> None:
    """Deactivate an account and end its sessions (never the last active admin)."""
    try:
        with open_database(settings(config)).session() as session:
            if not deactivate_user(session, username, actor=_CLI, source=_CLI):
                fail(f"no user {username!r}", 1)
    except AccountError as error:
        fail(error)
    typer.echo(f"deactivated {username}")


@app.command("password")
def users_password(
    username: Annotated[str, typer.Argument(help="The account whose password to set.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Set an account's password (a reset: every session of the account ends); asked for, never an
    argument. Users change their own at POST /api/me/password."""
    found = settings(config)
    password = _password(password_stdin, "new password")
    try:
        with open_database(found).session() as session:
            change_password(session, username, password, actor=_CLI, source=_CLI)
    except AccountError as error:
        fail(error)
    typer.echo(f"password of {username} changed; its sessions ended")
