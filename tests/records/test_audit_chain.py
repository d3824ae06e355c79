"""The audit chain: every kind of tampering below a seal is found, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import delete, text, update
from typer.testing import CliRunner

from triage.cli import app
from triage.records import audit_chain, store
from triage.records.db import Database, migrate
from triage.records.tables import AuditEvent, AuditSeal

NO_GRACE = timedelta(0)


def _write_events(database: Database, count: int, actor: str = "dr.a") -> None:
    with database.session() as session:
        for number in range(count):
            store.audit(
                session, actor=actor, action="study.viewed", source="10.0.0.9",
                now=database.now(), detail=f"event {number} æøå",
            )  # fmt: skip


def _sealed(database: Database, batch: int = 4) -> int:
    seals = 0
    while True:
        with database.session() as session:
            if audit_chain.seal(session, database.now(), NO_GRACE, batch=batch) is None:
                return seals
        seals += 1


def _verify(database: Database) -> audit_chain.Verification:
    with database.reading() as session:
        return audit_chain.verify(session)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def chained(request, tmp_path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/chain.db"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate(url)
    database = Database(url)
    if request.param == "postgresql":  # the server's database is shared by the session's tests
        with database.session() as session:
            session.execute(text("TRUNCATE audit_seals, audit_events RESTART IDENTITY"))
    _write_events(database, 10)
    assert _sealed(database) == 3  # 4 + 4 + 2
    yield database
    database.dispose()


def test_an_untouched_chain_verifies_and_new_events_wait_unsealed(chained):
    _write_events(chained, 2)
    found = _verify(chained)
    assert found.intact, found.problems
    assert (found.seals, found.sealed_events, found.unsealed_events) == (3, 10, 2)
    assert found.head_digest != audit_chain.GENESIS


def test_a_changed_event_breaks_its_seal(chained):
    with chained.session() as session:
        session.execute(update(AuditEvent).where(AuditEvent.id == 6).values(actor="someone.else"))
    found = _verify(chained)
    assert not found.intact
    assert len(found.problems) == 1 and "events 5..8" in found.problems[0] and "digest" in found.problems[0]


def test_a_removed_event_breaks_its_seal(chained):
    with chained.session() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.id == 2))
    problems = _verify(chained).problems
    assert any("events 1..4" in p and "holds 3 events, 4 were sealed" in p for p in problems)


def test_an_event_inserted_below_a_seal_breaks_it(chained):
    with chained.session() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.id == 3))
    assert not _verify(chained).intact
    with chained.session() as session:  # put a forged row where the removed one was
        forged = AuditEvent(
            id=3, at=chained.now(), actor="forger", action="study.viewed", source="", detail=""
        )
        session.add(forged)
    assert any("events 1..4" in p and "digest" in p for p in _verify(chained).problems)


def test_a_recomputed_seal_is_caught_by_the_next_one(chained):
    """Someone who edits an event and recomputes its seal's digest breaks the link to the next seal."""
    with chained.session() as session:
        session.execute(update(AuditEvent).where(AuditEvent.id == 1).values(detail="nothing to see"))
        events = session.query(AuditEvent).where(AuditEvent.id <= 4).order_by(AuditEvent.id).all()
        forged = audit_chain.chain_digest(audit_chain.GENESIS, events)
        session.execute(update(AuditSeal).where(AuditSeal.first_event_id == 1).values(digest=forged))
    problems = _verify(chained).problems
    assert len(problems) == 1 and "events 5..8" in problems[0] and "previous digest" in problems[0]


def test_events_within_the_grace_are_not_sealed_yet(tmp_path):
    url = f"sqlite:///{tmp_path}/grace.db"
    migrate(url)
    database = Database(url)
    _write_events(database, 3)
    with database.session() as session:
        assert audit_chain.seal(session, database.now()) is None  # all younger than SEAL_GRACE
    with database.session() as session:
        later = database.now() + audit_chain.SEAL_GRACE + timedelta(seconds=1)
        sealed = audit_chain.seal(session, later)
        assert sealed is not None and (sealed.first_event_id, sealed.last_event_id) == (1, 3)
    database.dispose()


def test_the_cli_seals_and_verifies_and_exits_1_on_a_break(make_settings, monkeypatch):
    settings = make_settings()
    monkeypatch.setenv("TRIAGE_HOME", str(settings.home))
    runner = CliRunner()
    migrate(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    _write_events(database, 5)
    sealed = runner.invoke(app, ["audit", "seal", "--grace-seconds", "0"])
    assert sealed.exit_code == 0 and "sealed 5 events" in sealed.output
    verified = runner.invoke(app, ["audit", "verify"])
    assert verified.exit_code == 0 and "the audit chain is intact" in verified.output
    with database.session() as session:
        session.execute(text("UPDATE audit_events SET source = '1.2.3.4' WHERE id = 2"))
    database.dispose()
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1 and "BROKEN: seal 1 (events 1..5)" in broken.output


def test_the_leading_listener_seals_the_audit_log(make_settings):
    from dicom_node.listener import Listener

    listener = Listener(make_settings())
    _write_events(listener.database, 2)
    with listener.database.session() as session:  # make them older than the grace
        session.execute(update(AuditEvent).values(at=listener.database.now() - timedelta(minutes=5)))
    listener.leadership.try_acquire()
    listener._seal_audit()
    found = _verify(listener.database)
    assert found.intact and (found.seals, found.sealed_events) == (1, 2)
    listener.leadership.release()
    listener.database.dispose()
