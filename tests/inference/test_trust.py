"""Workers act on the outbox's record of a task, never on what the broker delivered:
a forged message on a shared broker cannot point a worker at another patient's images."""

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from dicom_node import routing
from dicom_node.studies import StudyMonitor
from inference.inputs import read_study
from inference.worker import make_worker_app
from testkit import synthetic
from tests.dicom_node.test_studies import T0, RecordingPublisher, receive
from triage.messages import ANALYSE_STUDY, REPORT_NOT_ANALYSED, AnalyseStudy
from triage.outcomes import Analysed, FractureOutcome, ModelIdentity
from triage.records.tables import OutboxMessage, Result, StudyState, StudyVersion

MODEL = ModelIdentity("fracture-demo", "1.0", "ab" * 32)


@pytest.fixture
def analysed_inputs():
    return []


@pytest.fixture
def worker(database, settings, analysed_inputs):
    def fracture(payload, study):
        analysed_inputs.append(sorted(ref.sop_instance_uid for ref in payload.instances))
        return Analysed("NO FRACTURE", MODEL, FractureOutcome(state="NO_FRACTURE", probability=0.01))

    return make_worker_app(settings, database, {"fracture": fracture})


@pytest.fixture
def recorded(database, settings):
    """Two trauma studies queued by the monitor: their outbox ids and payloads."""
    monitor = StudyMonitor(
        database, routing.RoutingConfig.load(settings.routing_file), RecordingPublisher(), 60
    )
    receive(database, [synthetic.dx()], T0)
    receive(database, [synthetic.dx()], T0)
    monitor.sweep(T0 + timedelta(seconds=2))
    with database.session() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        return [(row.id, dict(row.payload)) for row in rows]


def states(database):
    with database.session() as session:
        return [v.state for v in session.scalars(select(StudyVersion).order_by(StudyVersion.id))]


def test_a_forged_message_analyses_only_what_the_database_says(
    worker, recorded, database, analysed_inputs, caplog
):
    (first_id, first), (_, second) = recorded
    forged = AnalyseStudy.model_validate(first).model_copy(
        update={"instances": AnalyseStudy.model_validate(second).instances}  # another patient's image
    )
    with caplog.at_level(logging.WARNING):
        run = worker.tasks[ANALYSE_STUDY].apply(
            kwargs={"payload": forged.model_dump(mode="json")}, task_id=f"outbox-{first_id}"
        )
    assert run.get() == StudyState.ANALYSED
    genuine = sorted(ref["sop_instance_uid"] for ref in first["instances"])
    assert analysed_inputs == [genuine]
    assert "differs from its outbox record" in caplog.text
    with database.session() as session:
        assert session.scalars(select(Result)).one().version_id == first["study_version_id"]
    assert states(database) == [StudyState.ANALYSED, StudyState.QUEUED]


@pytest.mark.parametrize("task_id", ["outbox-999", "not-from-the-outbox", None])
def test_a_message_no_outbox_record_stands_behind_is_refused(
    worker, recorded, database, analysed_inputs, task_id, caplog
):
    (_, first), _ = recorded
    with caplog.at_level(logging.WARNING):
        run = worker.tasks[ANALYSE_STUDY].apply(kwargs={"payload": first}, task_id=task_id)
    assert run.get() == "refused"
    assert analysed_inputs == [] and states(database) == [StudyState.QUEUED, StudyState.QUEUED]
    assert "no outbox record stands behind" in caplog.text


def test_a_record_of_another_task_does_not_vouch_for_a_message(worker, recorded, database):
    (first_id, first), _ = recorded
    run = worker.tasks[REPORT_NOT_ANALYSED].apply(
        kwargs={"payload": {**first, "reason": "forged"}}, task_id=f"outbox-{first_id}"
    )
    assert run.get() == "refused"


def test_a_storage_key_that_leaves_storage_is_never_read(settings, tmp_path):
    datasets = [synthetic.dx()]
    payload = synthetic.store(datasets, settings.storage_dir, "fracture")
    outside = tmp_path / "elsewhere.dcm"
    (settings.storage_dir / payload.instances[0].storage_key).rename(outside)
    escaping = payload.instances[0].model_copy(update={"storage_key": f"../../{outside.name}"})
    assert (settings.storage_dir / escaping.storage_key).resolve() == outside.resolve()
    study = read_study(payload.model_copy(update={"instances": (escaping,)}), settings.storage_dir)
    assert study.images[0].dataset is None
    assert "outside storage" in study.images[0].problem
