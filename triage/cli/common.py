"""What every command shares: the service settings option, settings and database opened once, errors."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError

from triage.home import InsecureHome, secure_home
from triage.records.db import Database, migrate
from triage.settings import Settings, load_settings
from triage.values import DicomPeer

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="TRIAGE_CONFIG",
        help="The service settings YAML (configs/service.example.yaml); TRIAGE_* variables win.",
    ),
]


def settings(config: Path | None) -> Settings:
    """Build the settings once, or exit with the reason in plain words."""
    try:
        return load_settings(config)
    except (ValidationError, FileNotFoundError) as error:
        typer.echo(f"triage: invalid settings:\n{error}", err=True)
        raise typer.Exit(2) from error


def secure(found: Settings) -> Settings:
    """Check and tighten TRIAGE_HOME before anything is written under it, or exit saying why."""
    try:
        secure_home(found.home, found.home_group)
    except InsecureHome as error:
        fail(f"refusing to start: {error}")
    except KeyError:
        fail(f"TRIAGE_HOME_GROUP {found.home_group!r} is not a group of this host")
    return found


def open_database(found: Settings) -> Database:
    """The database of these settings (TRIAGE_HOME secured first), migrated to the newest schema."""
    secure(found)
    migrate(found.resolved_database_url)
    return Database(found.resolved_database_url)


def fail(message: object, code: int = 2) -> NoReturn:
    """Stop the command with ``triage: <message>`` on standard error."""
    typer.echo(f"triage: {message}", err=True)
    raise typer.Exit(code)


def peer(text: str) -> DicomPeer:
    try:
        return DicomPeer.parse(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


def wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
