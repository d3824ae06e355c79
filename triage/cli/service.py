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

logger = logging.getLogger(__name__)
_STOP_GRACE_SECONDS = 30.0


def listener(config: ConfigOption = None) -> None:
    """Run the DICOM listener, study monitor and outbox publisher, and PACS delivery."""
    from delivery import audit_syslog, pacs
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
    wait_for_signal()
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
    celery_app = make_worker_app(found, open_database(found), ModelPipelines(found), concurrency)
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


class _Restarts:
    """A child's restart budget: at most ``limit`` restarts within ``window_seconds``."""

    def __init__(self, limit: int = 5, window_seconds: float = 600.0) -> None:
        self._limit, self._window = limit, window_seconds
        self._times: list[float] = []

    def allow(self, now: float) -> bool:
        self._times = [t for t in self._times if now - t < self._window]
        if len(self._times) >= self._limit:
            return False
        self._times.append(now)
        return True


def serve(config: ConfigOption = None) -> None:
    """Run listener, worker and API together on one machine, restarting any that exits (at most 5
    times in 10 minutes each, then all stop); Ctrl-C stops all three. DICOM ingest goes on while
    the API or the worker is restarted."""
    configure_logging()
    open_database(settings(config)).dispose()  # migrate once here, so the three do not race to it
    extra = ["--config", str(config)] if config else []

    def start(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "triage", name, *extra])

    names = ("listener", "worker", "api")
    children = {name: start(name) for name in names}
    budgets = {name: _Restarts() for name in names}
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    failed = None
    while not stopping.wait(0.5) and failed is None:
        for name, child in list(children.items()):
            if child.poll() is None:
                continue
            if not budgets[name].allow(time.monotonic()):
                logger.error(
                    "the %s stopped again (exit %s): restarted too often; stopping the others",
                    name, child.returncode,
                )  # fmt: skip
                failed = name
                break
            logger.error("the %s stopped unexpectedly (exit %s); restarting it", name, child.returncode)
            children[name] = start(name)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    for child in children.values():
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
    raise typer.Exit(1 if failed else 0)
