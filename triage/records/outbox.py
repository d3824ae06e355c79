"""The Celery app every process builds the same way, and the outbox that feeds the broker.

The database is the source of truth
for what still has to run: a task is written to the outbox in the transaction that queues its
study, and published from there, so a broker outage delays work but never loses it.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from triage.messages import QUEUE
from triage.records import queries, store
from triage.records.db import Database
from triage.settings import Settings

logger = logging.getLogger(__name__)

_EMBEDDED_POLL_SECONDS = 0.05  # kombu's server-less transports poll; 1 s by default is 1 s per study
_MAX_BACKOFF_SECONDS = 60.0
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
_TASK_ID = re.compile(r"outbox-(?P<id>[1-9][0-9]{0,17})")


def task_id(message_id: int) -> str:
    """The Celery task id of an outbox message: how a worker finds the message's record again."""
    return f"outbox-{message_id}"


def recorded_payload(
    database: Database, received_task_id: str | None, task_name: str, received: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The payload a worker acts on: the outbox's record of the task, never the message's own.

    With an external broker others may be able to write to, a message is only a pointer: a forged
    one naming another patient's images, or a study's instances left out, changes nothing, because
    the ids, storage keys and hashes come from the row the monitor wrote in the transaction that
    queued the study. None: no such task was ever written (the message is refused, and logged).
    """
    match = _TASK_ID.fullmatch(received_task_id or "")
    recorded = None
    if match is not None:
        with database.session() as session:
            recorded = queries.recorded_payload(session, int(match["id"]), task_name)
    if recorded is None:
        logger.warning("refused a %s message that no outbox record stands behind (task id %r)", task_name,
                       (received_task_id or "")[:64])  # fmt: skip
        return None
    if dict(received) != recorded:
        logger.warning("a %s message differs from its outbox record; the record is used", task_name)
    return recorded


def make_celery(settings: Settings, name: str = "triage") -> Celery:
    """Build the Celery app both producer and workers use: JSON only, one named queue.

    With ``broker_url`` unset the broker is a folder under ``home`` (kombu's filesystem transport):
    nothing to install or run, for workers on the same machine.
    """
    app = Celery(name)
    if settings.broker_url is not None:
        app.conf.broker_url = settings.broker_url.get_secret_value()
        if app.conf.broker_url.split(":", 1)[0] in AMQP_SCHEMES:
            # Publisher confirms: without them a task written to a connection RabbitMQ resets a moment
            # later is lost while the outbox counts it published (seen with the broker going down
            # mid-burst), and its study waits for its deadline. With them, publishing returns only
            # once RabbitMQ has the message, or raises and the outbox tries again.
            app.conf.broker_transport_options = {"confirm_publish": True}
    else:
        folder = settings.queue_dir.resolve()
        for sub in ("messages", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        app.conf.broker_url = "filesystem://localhost/"
        app.conf.broker_transport_options = {
            "data_folder_in": str(folder / "messages"),
            "data_folder_out": str(folder / "messages"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "polling_interval": _EMBEDDED_POLL_SECONDS,
        }
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        enable_utc=True,
    )
    return app


def _backoff_seconds(attempts: int) -> float:
    """Exponential backoff with full jitter, capped."""
    return random.uniform(0, min(_MAX_BACKOFF_SECONDS, 0.5 * 2**attempts))  # noqa: S311


class OutboxPublisher:
    """Publishes due outbox messages to the broker, in order, backing off while it is down.

    No database transaction is held while the broker is being talked to, so a slow broker never
    holds up the listener's writes. A crash between publishing and marking a message published
    sends it again; tasks claim their study version, so a duplicate message does nothing.
    """

    def __init__(self, database: Database, app: Celery) -> None:
        self._database = database
        self._app = app
        self._failures = 0

    def publish_due(self, now: datetime, limit: int = 100) -> int:
        """Publish up to ``limit`` due messages; return how many the broker took."""
        with self._database.session() as session:
            due = queries.due_messages(session, now, limit)
        published: list[int] = []
        failure: str | None = None
        for message_id, task_name, payload in due:
            try:
                self._app.send_task(
                    task_name,
                    kwargs={"payload": payload},
                    task_id=task_id(message_id),
                    queue=QUEUE,
                    retry=False,
                )
            except (OperationalError, OSError) as error:
                failure = f"{type(error).__name__}: {error}"
                break
            published.append(message_id)
        unsent = [row[0] for row in due[len(published) :]]
        with self._database.session() as session:
            if published:
                store.mark_published(session, published, now)
            if failure is not None:
                retry_at = now + timedelta(seconds=_backoff_seconds(self._failures))
                store.defer_unpublished(session, unsent, retry_at, failure)
        self._note_broker(failure, len(unsent))
        return len(published)

    def _note_broker(self, failure: str | None, waiting: int) -> None:
        """Log once when the broker goes away and once when it comes back."""
        if failure is not None:
            if self._failures == 0:
                logger.warning("broker unreachable, %d task(s) wait in the outbox: %s", waiting, failure)
            self._failures += 1
        elif self._failures:
            logger.info("broker reachable again after %d failed attempt(s)", self._failures)
            self._failures = 0
