"""The database: engine and sessions (SQLite in WAL mode by default, PostgreSQL by URL), migrations.

The tables are in ``tables.py``; ``store.py`` is the only module that writes study state, the outbox
and the audit trail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, DateTime, Engine, TypeDecorator, create_engine, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

logger = logging.getLogger(__name__)
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Clock:
    """The system of record's time: a reference read now and then, monotonic time in between.

    Quiet periods, leases and deadlines compare times that different processes wrote. On
    PostgreSQL the reference is the database server's clock, read every minute, so a worker host
    two hours behind claims and is judged in the same time as the listener. On SQLite (one host)
    it is this host's wall clock read once at start: a step of the wall clock afterwards (an NTP
    jump, an operator) moves no deadline of a running process.
    """

    def __init__(self, reference: Callable[[], datetime], recalibrate_seconds: float | None) -> None:
        self._reference = reference
        self._recalibrate = recalibrate_seconds
        self._lock = threading.Lock()
        self._anchor: tuple[datetime, float] | None = None

    def now(self) -> datetime:
        with self._lock:
            mono = time.monotonic()
            anchor = self._anchor
            if anchor is None or (self._recalibrate is not None and mono - anchor[1] > self._recalibrate):
                anchor = self._calibrate(mono, anchor)
            return anchor[0] + timedelta(seconds=mono - anchor[1])

    def _calibrate(self, mono: float, old: tuple[datetime, float] | None) -> tuple[datetime, float]:
        try:
            reference = self._reference()
        except SQLAlchemyError as error:
            if old is not None:
                return old  # keep counting from the last reading; try again next time
            logger.warning(
                "the database clock could not be read (%s): using this host's", type(error).__name__
            )
            return (utcnow(), mono)  # not kept: the next call reads the database again
        if old is not None:
            drift = (reference - (old[0] + timedelta(seconds=mono - old[1]))).total_seconds()
            if abs(drift) > 5:
                logger.warning("the database clock moved by %.0f s against this process's count", drift)
        self._anchor = (reference, mono)
        return self._anchor


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous: pass an aware UTC datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(), dict[str, Any]: JSON}


def _sqlite_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own transaction handling would start transactions DEFERRED; we issue BEGIN ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss, as C-STORE promises
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_READ_ONLY = "triage_read_only"


def _sqlite_begin(connection: Any) -> None:
    # A deferred transaction that turns into a write fails at once with "database is locked",
    # ignoring busy_timeout; IMMEDIATE takes the write lock up front and waits for it. Reads
    # (Database.reading) begin deferred: in WAL mode they take no lock a writer waits for.
    if connection.get_execution_options().get(_READ_ONLY):
        connection.exec_driver_sql("BEGIN DEFERRED")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """Create an engine; for SQLite, WAL mode, full sync and immediate write transactions."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (the newest by default; an older one downgrades)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    current = _current_revision(url)
    if revision != "head" and current is not None and int(current) > int(revision):
        command.downgrade(cfg, revision)
    else:
        command.upgrade(cfg, revision)


def _current_revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


class Database:
    """The engine and a session factory; one per process, built from the settings."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(
            self.engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False
        )
        if self.engine.dialect.name == "postgresql":
            self.clock = Clock(self._server_time, recalibrate_seconds=60.0)
        else:
            self.clock = Clock(utcnow, recalibrate_seconds=None)

    def _server_time(self) -> datetime:
        with self.engine.connect() as connection:
            value: datetime = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
        return value.astimezone(UTC)

    def now(self) -> datetime:
        """The time every deadline, lease and quiet period is measured in (see ``Clock``)."""
        return self.clock.now()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session that only reads, in one transaction that is always rolled back.

        On SQLite it begins deferred, so a flood of reads (page polls, metric scrapes, token checks)
        never holds the write lock that the listener's C-STORE commits wait for; anything a read
        must write (its audit row) goes in its own short ``session()`` afterwards.
        """
        session = self._readers()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
