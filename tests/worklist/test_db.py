"""The study database on SQLite (WAL) and on the machine's real PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from dicom_node.handlers import describe
from testkit import synthetic
from testkit.peers import storescu, wait_until
from tests.worklist.conftest import empty
from triage.records import store
from triage.records.db import migrate
from triage.records.tables import Instance, StateChange, StudyState, StudyVersion

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def add(database, ds, at=T0):
    with database.session() as session:
        return store.add_instance(
            session,
            describe(ds, sha256="1" * 64, size_bytes=10, calling="TESTSCU", peer="127.0.0.1:1"),
            at,
        ).id


def test_migrations_are_idempotent(any_database):
    migrate(any_database.url)
    with any_database.session() as session:
        assert session.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"


def test_timestamps_come_back_in_utc(any_database):
    add(any_database, synthetic.dx(), T0)
    with any_database.session() as session:
        version = session.scalars(select(StudyVersion)).one()
    assert version.opened_at == T0 and version.opened_at.tzinfo is not None


def test_a_transition_is_won_by_one_writer_only(any_database):
    version_id = add(any_database, synthetic.dx())
    with any_database.session() as session:
        assert store.transition(session, version_id, StudyState.RECEIVING, StudyState.COMPLETE, T0, "first")
    with any_database.session() as session:
        assert not store.transition(
            session, version_id, StudyState.RECEIVING, StudyState.COMPLETE, T0, "second"
        )
    with any_database.session() as session:
        history = [(c.state, c.reason) for c in session.scalars(select(StateChange).order_by(StateChange.id))]
    assert history == [(StudyState.RECEIVING, "first instance"), (StudyState.COMPLETE, "first")]


def test_late_instance_opens_the_next_version(any_database):
    ids = synthetic.StudyIds()
    first = add(any_database, synthetic.dx(ids))
    with any_database.session() as session:
        store.transition(session, first, StudyState.RECEIVING, StudyState.COMPLETE, T0)
    second = add(any_database, synthetic.dx(ids), T0 + timedelta(seconds=5))
    assert second != first
    with any_database.session() as session:
        numbers = [v.number for v in session.scalars(select(StudyVersion).order_by(StudyVersion.number))]
        version = session.get(StudyVersion, second)
        assert len(store.instances_of(session, version)) == 2
    assert numbers == [1, 2]


def test_sop_instance_uid_is_unique(any_database):
    ds = synthetic.dx()
    add(any_database, ds)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        add(any_database, ds)


@pytest.mark.integration
def test_listener_on_postgresql_stores_and_routes(make_settings, postgres_url):
    from dicom_node.listener import Listener

    listener = Listener(make_settings(database_url=postgres_url))
    empty(listener.database)
    listener.start()
    try:
        paths = synthetic.write(synthetic.screen(), listener.settings.home / "send")
        assert storescu(listener.port, *paths).returncode == 0
        with listener.database.session() as session:
            assert len(session.scalars(select(Instance)).all()) == 4

        def queued():
            with listener.database.session() as session:
                return session.scalars(select(StudyVersion.state)).all() == [StudyState.QUEUED]

        wait_until(queued, timeout=10)
    finally:
        listener.stop()
