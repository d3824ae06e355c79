"""The analyse task body, called directly on a real SQLite database (no broker)."""

from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select

from dicom_node import routing
from dicom_node.studies import StudyMonitor
from inference.inputs import read_study
from inference.model import ModelUnavailable
from inference.tasks import AnalyseStudyTask
from testkit import synthetic
from tests.dicom_node.test_studies import T0, RecordingPublisher, receive
from triage.messages import AnalyseStudy
from triage.outcomes import Analysed, FractureOutcome, ModelIdentity, Skipped
from triage.pipelines import Pipeline
from triage.records import store
from triage.records.results import ResultObject
from triage.records.tables import Delivery, DeliveryState, OutboxMessage, Result, StudyState, StudyVersion
from triage.stored import StorageUnavailable

MODEL = ModelIdentity("fracture-demo", "1.0", "ab" * 32)
NO_FRACTURE = FractureOutcome(state="NO_FRACTURE", probability=0.01)


@pytest.fixture
def task(database, settings):
    """The task over the (empty) storage folder: these pipelines read no pixels."""

    def build(pipelines, **options):
        return AnalyseStudyTask(database, pipelines, settings.storage_dir, **options)

    return build


def answers(outcome, summary="NO FRACTURE", model=MODEL):
    return lambda payload, study: Analysed(summary, model, outcome)


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


def test_without_a_model_the_study_is_not_analysed_with_reason(database, queued, task):
    assert task({})(queued) == StudyState.NOT_ANALYSED
    assert state(database) == (
        StudyState.NOT_ANALYSED,
        "no model is installed for the fracture pipeline",
    )


def test_result_names_the_model_version(database, queued, task):
    outcome = NO_FRACTURE
    assert task({"fracture": answers(outcome)})(queued) == StudyState.ANALYSED
    assert state(database) == (StudyState.ANALYSED, "NO FRACTURE [model fracture-demo 1.0]")
    with database.session() as session:
        result = session.scalars(select(Result)).one()
    assert (result.model_name, result.model_version, result.weights_sha256) == (
        "fracture-demo",
        "1.0",
        "ab" * 32,
    )
    assert result.outcome == outcome and result.software_version


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (ModelUnavailable("weights missing"), "the fracture model is unavailable: weights missing"),
        (SoftTimeLimitExceeded(), "analysis exceeded its time limit"),
        (RuntimeError("bug"), "analysis failed: RuntimeError"),
    ],
)
def test_a_crashed_or_timed_out_analysis_ends_conservative(database, queued, task, failure, reason):
    def pipeline(payload, study):
        raise failure

    assert task({"fracture": pipeline})(queued) == StudyState.NOT_ANALYSED
    assert state(database) == (StudyState.NOT_ANALYSED, reason)


def test_storage_hiccups_are_retried_a_bounded_number_of_times(database, queued, task):
    calls = []

    def flaky(payload, storage_dir):
        calls.append(1)
        if len(calls) < 3:
            raise StorageUnavailable("NFS timeout")
        return read_study(payload, storage_dir)

    run = task({"fracture": answers(NO_FRACTURE)}, retry_seconds=0.01, reader=flaky)
    assert run(queued) == StudyState.ANALYSED
    assert len(calls) == 3


def test_storage_that_stays_down_ends_conservative(database, queued, task):
    def down(payload, storage_dir):
        raise StorageUnavailable("NFS gone")

    task({"fracture": answers(NO_FRACTURE)}, retry_seconds=0.01, reader=down)(queued)
    assert state(database)[1].startswith("storage unavailable after 3 attempts")


def test_a_duplicate_message_analyses_nothing_twice(database, queued, task):
    calls = []

    def pipeline(payload, study):
        calls.append(payload.study_version_id)
        return Skipped(payload.pipeline, "test")

    run = task({"fracture": pipeline})
    run(queued)
    assert run(queued) == "not-queued"
    assert len(calls) == 1


def test_a_result_after_the_deadline_does_not_replace_the_conservative_path(database, queued, task):
    run = task({})
    payload = AnalyseStudy.model_validate(queued)
    payload_id = payload.study_version_id
    with database.session() as session:
        assert store.transition(session, payload_id, StudyState.QUEUED, StudyState.ANALYSING, T0, "claimed")
        assert store.transition(
            session, payload_id, StudyState.ANALYSING, StudyState.NOT_ANALYSED, T0, "deadline"
        )
    fracture = FractureOutcome(state="FRACTURE", probability=0.9)
    assert run.record(payload, None, Analysed("FRACTURE", MODEL, fracture)) == "late"
    assert state(database) == (StudyState.NOT_ANALYSED, "deadline")


def test_a_malformed_payload_is_refused(database, task):
    with pytest.raises(ValueError, match="study_version_id"):
        task({})({"pipeline": "fracture"})


class BrokenReports:
    """A report writer whose build fails, as a highdicom bug or a full disk would."""

    def write(self, payload, study, outcome, model, reason):
        raise OSError("No space left on device")


class RecordingReports:
    def write(self, payload, study, outcome, model, reason):
        return [
            ResultObject("sc", "1.2.9.2", "s/sc.dcm"),
            ResultObject("sr", "1.2.9.1", "s/sr.dcm", "s/sr2.dcm"),
        ]


def test_reports_are_queued_for_the_pacs_with_the_result(database, queued, task):
    run = task({"fracture": answers(NO_FRACTURE)}, reports=RecordingReports())
    assert run(queued) == StudyState.ANALYSED
    with database.session() as session:
        rows = {
            d.kind: (d.state, d.sop_instance_uid, d.alternate_storage_key)
            for d in session.scalars(select(Delivery))
        }
    assert rows == {
        "sr": (DeliveryState.PENDING, "1.2.9.1", "s/sr2.dcm"),
        "sc": (DeliveryState.PENDING, "1.2.9.2", ""),
    }


def test_a_report_that_cannot_be_built_is_a_visible_failed_delivery_not_a_lost_result(database, queued, task):
    run = task({"fracture": answers(NO_FRACTURE)}, reports=BrokenReports())
    assert run(queued) == StudyState.NOT_ANALYSED
    with database.session() as session:
        [delivery] = session.scalars(select(Delivery)).all()
        assert session.scalars(select(Result)).one().analysed
    assert delivery.state == DeliveryState.FAILED
    assert delivery.last_error == "report not built: OSError"
    assert state(database)[1].endswith("its report could not be built (OSError)")


CANDIDATE = ModelIdentity("fracture-candidate", "2.0", "cd" * 32)


def test_a_shadow_model_is_stored_beside_the_result_and_changes_nothing(database, queued, task):
    from evaluation.shadow import report
    from triage.records.tables import ShadowResult

    candidate = FractureOutcome(state="DOUBT", probability=0.3)
    run = task(
        {"fracture": answers(NO_FRACTURE)}, shadows=lambda name: answers(candidate, "DOUBT", CANDIDATE)
    )
    assert run(queued) == StudyState.ANALYSED
    assert state(database) == (StudyState.ANALYSED, "NO FRACTURE [model fracture-demo 1.0]")
    with database.session() as session:
        shadow = session.scalars(select(ShadowResult)).one()
        assert (shadow.model_name, shadow.model_version, shadow.outcome) == (
            "fracture-candidate",
            "2.0",
            candidate,
        )
        assert session.scalars(select(Result)).one().model_name == "fracture-demo"
        compared = report(session, Pipeline.FRACTURE)["candidates"]["fracture-candidate 2.0"]
    assert compared["studies"] == 1 and compared["verdict_agreement"] == 0.0
    assert compared["mean_absolute_probability_difference"] == pytest.approx(0.29)


def test_a_failing_shadow_model_cannot_touch_the_study(database, queued, task):
    def broken(payload, study):
        raise RuntimeError("candidate bug")

    outcome = FractureOutcome(state="FRACTURE", probability=0.9)
    run = task({"fracture": answers(outcome, "FRACTURE")}, shadows=lambda name: broken)
    assert run(queued) == StudyState.ANALYSED
    assert state(database)[0] == StudyState.ANALYSED
