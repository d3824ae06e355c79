"""DICOM tools for operators: send files to a peer, check a peer answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from triage.cli.common import peer
from triage.logs import configure_logging
from triage.values import check_ae_title

CallingAe = Annotated[str, typer.Option("--calling-ae", help="Our AE title in the association.")]


def send(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="Files or folders to send.")],
    to: Annotated[str, typer.Option("--to", help="Destination as AE@host:port.")],
    calling_ae: CallingAe = "TRIAGESCU",
) -> None:
    """Send DICOM files to a peer with C-STORE."""
    from delivery.scu import send as send_files

    configure_logging("WARNING")
    results = send_files(paths, peer(to), check_ae_title(calling_ae))
    for result in results:
        shown = "-" if result.status is None else f"0x{result.status:04X}"
        typer.echo(f"{shown} {result.detail}: {result.path}")
    failed = sum(not r.ok for r in results)
    typer.echo(f"{len(results) - failed} sent, {failed} failed")
    raise typer.Exit(1 if failed or not results else 0)


def echo(
    destination: Annotated[str, typer.Argument(help="Peer as AE@host:port.", metavar="PEER")],
    calling_ae: CallingAe = "TRIAGESCU",
) -> None:
    """Check a peer answers C-ECHO."""
    from delivery.scu import echo as send_echo

    configure_logging("WARNING")
    status = send_echo(peer(destination), check_ae_title(calling_ae))
    if status is None:
        typer.echo(f"no association with {destination}", err=True)
        raise typer.Exit(1)
    typer.echo(f"C-ECHO status 0x{status:04X}")
    raise typer.Exit(0 if status == 0 else 1)
