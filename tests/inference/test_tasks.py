"""The analyse task body, called directly on a real SQLite database (no broker)."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from dicom_node import routing
from dicom_node.studies import StudyMonitor
from inference.tasks import Analysed, AnalyseStudyTask, Skipped
from tests import synthetic
from tests.dicom_node.test_studies import T0, RecordingPublisher, receive
from worklist import store
from worklist.db import OutboxMessage, StudyState, StudyVersion


@pytest.fixture
def queued(database, settings):
    """One trauma study, complete and queued; returns its task payload."""
    monitor = StudyMonitor(
        database, routing.RoutingConfig.load(settings.routing_file), RecordingPublisher(), 60
    )
    receive(database, [synthetic.dx()], T0)
    monitor.sweep(T0 + timedelta(seconds=2))
    with database.session() as session:
        return session.scalars(select(OutboxMessage.payload)).one()


def state(database):
    with database.session() as session:
        version = session.scalars(select(StudyVersion)).one()
        return version.state, version.reason


def test_without_a_model_the_study_is_not_analysed_with_reason(database, queued):
    assert AnalyseStudyTask(database, pipelines={})(queued) == StudyState.NOT_ANALYSED
    assert state(database) == (
        StudyState.NOT_ANALYSED,
        "no model is installed for the fracture pipeline",
    )


def test_result_names_the_model_version(database, queued):
    task = AnalyseStudyTask(
        database, {"fracture": lambda payload: Analysed("NO FRACTURE", "fracture-demo 1.0")}
    )
    assert task(queued) == StudyState.ANALYSED
    assert state(database) == (StudyState.ANALYSED, "NO FRACTURE (model fracture-demo 1.0)")


def test_a_duplicate_message_analyses_nothing_twice(database, queued):
    calls = []

    def pipeline(payload):
        calls.append(payload.study_version_id)
        return Skipped("test")

    task = AnalyseStudyTask(database, {"fracture": pipeline})
    task(queued)
    assert task(queued) == "not-queued"
    assert len(calls) == 1


def test_a_result_after_the_deadline_does_not_replace_the_conservative_path(database, queued):
    task = AnalyseStudyTask(database, {})
    payload_id = queued["study_version_id"]
    with database.session() as session:
        assert store.transition(session, payload_id, StudyState.QUEUED, StudyState.ANALYSING, T0, "claimed")
        assert store.transition(
            session, payload_id, StudyState.ANALYSING, StudyState.NOT_ANALYSED, T0, "deadline"
        )
    assert task.record(payload_id, Analysed("FRACTURE", "m 1")) == "late"
    assert state(database) == (StudyState.NOT_ANALYSED, "deadline")


def test_a_malformed_payload_is_refused(database):
    with pytest.raises(ValueError, match="study_version_id"):
        AnalyseStudyTask(database, {})({"pipeline": "fracture"})
