"""Readiness: whether the database answers, the queue takes tasks, and how the PACS was last found."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Generic, Literal, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from triage.records import queries, storage
from triage.records.db import Database
from triage.records.tables import (
    PACS,
    PEER_CHECK_SECONDS,
)
from triage.settings import Settings

_CHECK_CACHE_SECONDS = 15.0
T = TypeVar("T")


class Cached(Generic[T]):
    """A slow answer (C-ECHO to the PACS, a broker connection, a metrics scrape that reads the
    database) computed at most every ``ttl`` seconds, however often it is asked for."""

    def __init__(self, compute: Callable[[], T], ttl_seconds: float = _CHECK_CACHE_SECONDS) -> None:
        self._compute = compute
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = 0.0

    def __call__(self) -> T:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > self._ttl:
                self._value = self._compute()
                self._at = time.monotonic()
            return self._value


CachedCheck = Cached[bool]


def database_ready(database: Database) -> bool:
    try:
        with database.reading() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


def queue_check(settings: Settings) -> Callable[[], bool]:
    """Whether tasks can be handed to the broker: its folder (embedded), or a connection to it."""
    if settings.broker_url is None:
        folder = settings.queue_dir / "messages"
        return lambda: folder.is_dir() and os.access(folder, os.W_OK)

    url = settings.broker_url.get_secret_value()

    def connect() -> bool:
        from kombu.connection import Connection
        from kombu.exceptions import OperationalError

        try:
            with Connection(url, connect_timeout=2) as connection:  # type: ignore[no-untyped-call]
                connection.ensure_connection(max_retries=1, timeout=2)
        except (OperationalError, OSError):
            return False
        return True

    return connect


def pacs_state(
    settings: Settings, database: Database
) -> Literal["reachable", "unreachable", "not configured", "unknown"]:
    """The PACS as the delivering process last found it (C-ECHO); "unknown" when it has not looked
    for a while (the listener's process is not running)."""
    if settings.pacs is None:
        return "not configured"
    with database.reading() as session:
        status = queries.peer_status(session, PACS)
        if status is None or database.now() - status.checked_at > timedelta(seconds=3 * PEER_CHECK_SECONDS):
            return "unknown"
        return "reachable" if status.reachable else "unreachable"


def degraded(database: Database) -> list[str]:
    """Why triage runs degraded, in sentences an operator acts on ([]: it does not)."""
    with database.reading() as session:
        return queries.degraded(session, database.now())


def storage_degraded(settings: Settings) -> bool:
    """Whether storage is below the free-space watermark at which the listener refuses instances."""
    try:
        return storage.free_bytes(settings.storage_dir) < settings.storage_min_free_bytes
    except OSError:  # no storage folder yet: the listener has not started, nothing is degraded
        return False
