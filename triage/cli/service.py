"""The service's processes: the listener (with PACS delivery), workers, the web API, all three at once."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from typing import Annotated

import typer

from triage.cli.common import ConfigOption, fail, open_database, secure, settings, wait_for_signal
from triage.logs import configure_logging
from triage.supervisor import Supervisor

logger = logging.getLogger(__name__)
_STOP_GRACE_SECONDS = 30.0


def listener(config: ConfigOption = None) -> None:
    """Run the DICOM listener, study monitor and outbox publisher, PACS delivery, HL7 results out and
    outcomes in."""
    from delivery import audit_syslog, notify, outcomes_in, pacs, ris
    from dicom_node.listener import Listener
    from dicom_node.scp import AllowListEmpty

    configure_logging()
    node = Listener(secure(settings(config)))
    try:
        node.start()
    except AllowListEmpty as error:
        fail(error)
    senders = pacs.start(node.settings, node.database, lambda: node.leading)
    senders += audit_syslog.start(node.settings, node.database, lambda: node.leading)
    senders += ris.start(node.settings, node.database, lambda: node.leading)
    senders += notify.start(node.settings, node.database, lambda: node.leading)
    receivers = outcomes_in.start(node.settings, node.database)
    wait_for_signal()
    for receiver in receivers:
        receiver.stop()
    for sender in senders:
        sender.stop()
    node.stop()


def worker(
    config: ConfigOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Run a Celery worker that analyses queued studies."""
    from inference.worker import ModelPipelines, make_worker_app
    from triage.messages import QUEUE

    configure_logging()
    found = settings(config)
    database = open_database(found)
    celery_app = make_worker_app(found, database, ModelPipelines(found, database), concurrency)
    celery_app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            "-Q",
            QUEUE,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=INFO",
        ]
    )


def api(config: ConfigOption = None) -> None:
    """Run the web API and the worklist page."""
    import uvicorn

    from triage.records.accounts import bootstrap_admin
    from worklist.app import create_app
    from worklist.auth import Unprotected, check_exposure, is_loopback

    configure_logging()
    found = settings(config)
    database = open_database(found)
    try:
        check_exposure(found, database)
    except Unprotected as error:
        fail(error)
    created = bootstrap_admin(found.home, database) if is_loopback(found.api_host) else None
    if created is not None:
        logger.warning(
            "first start: created the account 'admin' (role admin); its password is in %s. "
            "Add radiologists with 'triage users add NAME --role radiologist'.",
            created,
        )
    if not is_loopback(found.api_host) and found.api_tls_certificate is None:
        logger.warning(
            "serving plain HTTP on %s: put a TLS proxy in front or set TRIAGE_API_TLS_CERTIFICATE",
            found.api_host,
        )
    try:
        app = create_app(database, found)
    except ValueError as error:  # a label key too short to keep identities out of reach
        fail(error)
    uvicorn.run(
        app,
        host=found.api_host,
        port=found.api_port,
        log_config=None,
        access_log=False,  # uvicorn's access log prints query strings, which may hold patient names
        ssl_certfile=found.api_tls_certificate,
        ssl_keyfile=found.api_tls_private_key,
    )
    app.state.triage.security.close()  # the refused tokens and 403s of the last second


def serve(config: ConfigOption = None) -> None:
    """Run listener, worker and API together on one machine, starting again any that exits after a
    backoff that doubles with each stop (up to 5 minutes; never given up); Ctrl-C stops all three.
    DICOM ingest goes on while the API or the worker is down; one that keeps stopping shows as
    degraded in /readyz and on the worklist page."""
    configure_logging()
    found = settings(config)
    database = open_database(found)  # migrates once here, so the three do not race to it
    extra = ["--config", str(config)] if config else []

    def start(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "triage", name, *extra])

    supervisor = Supervisor(
        start, ("listener", "worker", "api"), database, found.serve_restart_backoff_seconds
    )
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    while not stopping.wait(0.5):
        supervisor.check(time.monotonic())
    supervisor.stop(_STOP_GRACE_SECONDS)
    database.dispose()
