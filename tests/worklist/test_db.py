"""The study database on SQLite (WAL) and on the machine's real PostgreSQL."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from sqlalchemy import select, text

from dicom_node.handlers import describe
from testkit import synthetic
from testkit.peers import storescu, wait_until
from tests.worklist.conftest import empty
from triage.records import queries, store
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
        assert session.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0021"


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
        assert len(queries.instances_of(session, version)) == 2
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


LEGACY_FRACTURE = {
    "state": "NO FRACTURE",
    "probability": 0.05,
    "eligible_for_discharge": True,
    "thresholds": {"fracture": 0.6, "doubt": 0.2},
    "images": [{"sop_instance_uid": "1.2.3", "boxes": [{"corners": [1, 2, 3, 4], "score": 0.05}]}],
    "skipped": {},
}
STUDY = (
    "INSERT INTO studies (id, study_instance_uid, patient_id, issuer_of_patient_id, patient_name, "
    "patient_birth_date, accession_number, study_date, study_description, conflict, current_version, "
    "created_at) VALUES (1, '1.2', '', '', '', '', '', '', '', false, 1, '2026-01-01 00:00:00')"
)
VERSION = (
    "INSERT INTO study_versions (id, study_id, number, state, reason, pipeline, opened_at, last_instance_at) "
    "VALUES (:v, 1, :v, 'REPORTED', '', :p, '2026-01-01', '2026-01-01')"
)
RESULT = (
    "INSERT INTO results (version_id, pipeline, analysed, summary, model_name, model_version, "
    "weights_sha256, software_version, device, outcome, inputs, timings_ms, created_at) VALUES "
    "(:v, :p, :a, :s, 'm', '1', '', '0', '', :o, '{}', '{}', '2026-01-01')"
)
LEGACY_SCREEN = {"score": None, "route": "DOUBLE_READ", "high_risk": False, "reason": "invalid model output"}


def test_results_stored_before_outcomes_were_typed_upgrade_and_downgrade(make_settings):
    """Migration 0006: a database written by an earlier triage reads its results as typed outcomes."""
    from triage.outcomes import BreastOutcome, FractureOutcome
    from triage.records.db import Database, migrate
    from triage.records.tables import Result

    url = make_settings().resolved_database_url
    migrate(url, "0005")
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(STUDY))
        for version, outcome, pipeline, summary in (
            (1, LEGACY_FRACTURE, "fracture", "NO FRACTURE"),
            (2, LEGACY_SCREEN, "breast", "invalid model output; double reading"),
            (3, {}, "fracture", "pixel data cannot be decoded"),
        ):
            connection.execute(text(VERSION), {"v": version, "p": pipeline})
            values = {"v": version, "p": pipeline, "s": summary, "o": json.dumps(outcome)}
            connection.execute(text(RESULT), {**values, "a": bool(outcome.get("state"))})
    engine.dispose()
    migrate(url)
    database = Database(url)
    with database.session() as session:
        found = {r.version_id: r.outcome for r in session.scalars(select(Result))}
    database.dispose()
    assert isinstance(found[1], FractureOutcome) and found[1].state == "NO_FRACTURE"
    assert found[1].eligible_for_discharge and found[1].marks[0].corners == (1, 2, 3, 4)
    assert isinstance(found[2], BreastOutcome) and found[2].verdict == "NOT_ANALYSED"
    assert found[3] == FractureOutcome(reason="pixel data cannot be decoded")
    migrate(url, "0005")
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT version_id, outcome FROM results")).all())
    engine.dispose()
    assert json.loads(rows[1]) == LEGACY_FRACTURE and json.loads(rows[2]) == LEGACY_SCREEN


def test_instances_of_studies_routed_before_0011_are_shown_after_the_upgrade(make_settings):
    """0011 added instances.routed as false for all; 0012 marks those of routed versions, so a site
    upgraded from 0010 shows its studies' images again. A version still receiving stays unshown."""
    from triage.records.db import migrate

    url = make_settings().resolved_database_url
    migrate(url, "0011")
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(STUDY))
        connection.execute(text(VERSION), {"v": 1, "p": "fracture"})  # REPORTED
        connection.execute(text(VERSION), {"v": 2, "p": ""})
        connection.execute(text("UPDATE study_versions SET state = 'RECEIVING' WHERE id = 2"))
        for version, sop in ((1, "1.2.3.1"), (2, "1.2.3.2")):
            connection.execute(text(INSTANCE), {"v": version, "sop": sop})
    engine.dispose()
    migrate(url)
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        routed = dict(connection.execute(text("SELECT sop_instance_uid, routed FROM instances")).all())
    engine.dispose()
    assert {sop: bool(flag) for sop, flag in routed.items()} == {"1.2.3.1": True, "1.2.3.2": False}


INSTANCE = (
    "INSERT INTO instances (study_id, version_number, sop_instance_uid, sop_class_uid, series_instance_uid, "
    "transfer_syntax_uid, storage_key, sha256, size_bytes, calling_ae_title, attributes, received_at, "
    "routed) VALUES (1, :v, :sop, '1.2.840.10008.5.1.4.1.1.1.1', '1.2.9', '1.2.840.10008.1.2.1', "
    "'k', '', 1, 'SCU', '{}', '2026-01-01', false)"
)


@pytest.mark.integration
def test_associations_creating_one_study_at_once_all_succeed(any_database):
    """Eight receivers add the first instances of one new study at the same moment: none fails (the
    creation race is lost inside a savepoint), and all land in one version."""
    import threading

    ids = synthetic.StudyIds()
    datasets = [synthetic.dx(ids, instance_number=n + 1) for n in range(8)]
    barrier, errors = threading.Barrier(len(datasets)), []

    def receive(ds):
        barrier.wait()
        try:
            add(any_database, ds)
        except Exception as error:  # noqa: BLE001 - the test reports what any receiver met
            errors.append(repr(error))

    threads = [threading.Thread(target=receive, args=(ds,)) for ds in datasets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with any_database.session() as session:
        assert session.scalar(select(sqlalchemy.func.count()).select_from(Instance)) == 8
        assert [v.number for v in session.scalars(select(StudyVersion))] == [1]


@pytest.mark.integration
def test_an_instance_never_joins_a_version_the_monitor_has_completed(any_database, settings):
    """A receiver holds the study's version (instance added, not yet committed) while the real monitor
    sweeps past its quiet period: the monitor waits for the commit, and the queued analysis then
    names both instances, never only the first."""
    import threading

    from dicom_node import routing
    from dicom_node.studies import StudyMonitor
    from tests.dicom_node.test_studies import RecordingPublisher
    from triage import messages
    from triage.records.tables import OutboxMessage

    ids = synthetic.StudyIds()
    add(any_database, synthetic.dx(ids, instance_number=1))
    late = describe(
        synthetic.dx(ids, instance_number=2), sha256="2" * 64, size_bytes=10, calling="TESTSCU", peer="x"
    )
    holding, release = threading.Event(), threading.Event()

    def receiver():
        with any_database.session() as session:
            store.add_instance(session, late, T0)
            holding.set()
            release.wait(timeout=5)

    thread = threading.Thread(target=receiver)
    thread.start()
    assert holding.wait(timeout=10)
    monitor = StudyMonitor(
        any_database, routing.RoutingConfig.load(settings.routing_file), RecordingPublisher(), 60
    )
    swept = threading.Thread(target=monitor.sweep, args=(T0 + timedelta(hours=1),))
    swept.start()
    swept.join(timeout=1)
    release.set()
    thread.join()
    swept.join()
    with any_database.session() as session:
        [message] = session.scalars(select(OutboxMessage)).all()
        payload = messages.AnalyseStudy.model_validate(message.payload)
    assert len(payload.instances) == 2
