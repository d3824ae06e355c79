"""The study monitor on a real SQLite database, with time passed in (no sleeping)."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from dicom_node import routing
from dicom_node.handlers import describe
from dicom_node.studies import StudyMonitor
from testkit import synthetic
from triage import messages
from triage.records import queries, store
from triage.records.tables import AuditEvent, OutboxMessage, StateChange, Study, StudyState, StudyVersion

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class RecordingPublisher:
    """Stands in for the broker: records what would be published."""

    def __init__(self):
        self.calls = 0

    def publish_due(self, now, limit=100):
        self.calls += 1
        return 0


@pytest.fixture
def monitor(database, settings):
    config = routing.RoutingConfig.load(settings.routing_file)
    return StudyMonitor(database, config, RecordingPublisher(), analysis_lease_seconds=60)


def receive(database, datasets, at):
    with database.session() as session:
        for ds in datasets:
            store.add_instance(
                session,
                describe(ds, sha256="0" * 64, size_bytes=1, calling="TESTSCU", peer="127.0.0.1:1"),
                at,
            )


def versions(database):
    with database.session() as session:
        return [
            (v.number, v.state, v.reason)
            for v in session.scalars(select(StudyVersion).order_by(StudyVersion.id))
        ]


def outbox(database):
    with database.session() as session:
        return [m.payload for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]


def test_screen_completes_as_soon_as_four_views_are_present(database, monitor):
    receive(database, synthetic.screen(), T0)
    result = monitor.sweep(T0)
    assert result.completed == 1
    assert versions(database) == [(1, StudyState.QUEUED, "routed by rule 'screening mammogram'")]
    [payload] = outbox(database)
    task = messages.AnalyseStudy.model_validate(payload)
    assert task.pipeline == "breast" and len(task.instances) == 4
    assert all(ref.storage_key.endswith(".dcm") and len(ref.sha256) == 64 for ref in task.instances)


def test_trauma_study_waits_for_its_quiet_period(database, monitor):
    receive(database, [synthetic.dx()], T0)
    assert monitor.sweep(T0 + timedelta(seconds=0.5)).completed == 0
    assert versions(database)[0][1] == StudyState.RECEIVING
    assert monitor.sweep(T0 + timedelta(seconds=1.0)).completed == 1
    assert versions(database) == [(1, StudyState.QUEUED, "routed by rule 'trauma radiograph'")]


def test_completion_deadline_ends_a_study_that_keeps_trickling(database, settings):
    config = routing.RoutingConfig.load(settings.routing_file)
    fracture = config.pipelines["fracture"].model_copy(update={"completion_deadline_seconds": 5.0})
    config = config.model_copy(update={"pipelines": {**config.pipelines, "fracture": fracture}})
    monitor = StudyMonitor(database, config, RecordingPublisher(), analysis_lease_seconds=60)
    ids = synthetic.StudyIds()
    receive(database, [synthetic.dx(ids)], T0)
    at = T0
    while at < T0 + timedelta(seconds=10):  # an image every half second, never quiet for 1 s
        at += timedelta(seconds=0.5)
        receive(database, [synthetic.dx(ids)], at)
        if monitor.sweep(at).completed:
            break
    assert at == T0 + timedelta(seconds=5)
    with database.session() as session:
        change = session.scalars(select(StateChange).where(StateChange.state == StudyState.COMPLETE)).one()
    assert change.reason == "completion deadline of 5 s reached"


def test_two_of_four_views_goes_to_double_reading_with_reason(database, monitor):
    receive(database, synthetic.screen(views=("L-CC", "R-CC")), T0)
    monitor.sweep(T0 + timedelta(seconds=5))
    assert versions(database) == [
        (1, StudyState.NOT_ANALYSED, "incomplete screen: missing L-MLO, R-MLO; double reading")
    ]
    [report] = outbox(database)  # no analysis, but the PACS is told why (SR + summary image)
    assert report["reason"] == "incomplete screen: missing L-MLO, R-MLO; double reading"
    assert report["pipeline"] == "breast" and len(report["instances"]) == 2


def test_unrouted_study_is_ignored_with_reason(database, monitor):
    receive(database, [synthetic.dx(body_part="CHEST")], T0)
    monitor.sweep(T0 + timedelta(seconds=5))
    [(_number, state, reason)] = versions(database)
    assert state == StudyState.IGNORED and "CHEST" in reason


def test_late_image_opens_a_new_version_analysed_with_everything(database, monitor):
    ids = synthetic.StudyIds()
    first = synthetic.dx(ids)
    receive(database, [first], T0)
    monitor.sweep(T0 + timedelta(seconds=2))
    late = synthetic.dx(ids, instance_number=2)
    receive(database, [late], T0 + timedelta(seconds=3))
    monitor.sweep(T0 + timedelta(seconds=5))
    assert [(n, s) for n, s, _ in versions(database)] == [
        (1, StudyState.SUPERSEDED),
        (2, StudyState.QUEUED),
    ]
    second = messages.AnalyseStudy.model_validate(outbox(database)[1])
    assert second.version == 2
    assert {r.sop_instance_uid for r in second.instances} == {
        first.SOPInstanceUID,
        late.SOPInstanceUID,
    }


def test_completion_happens_exactly_once(database, monitor):
    receive(database, synthetic.screen(), T0)
    assert monitor.sweep(T0).completed == 1
    assert monitor.sweep(T0 + timedelta(seconds=10)).completed == 0
    assert len(outbox(database)) == 1


def test_no_result_by_the_deadline_goes_conservative(database, monitor, settings):
    receive(database, synthetic.screen(), T0)
    monitor.sweep(T0)
    due = routing.RoutingConfig.load(settings.routing_file).pipelines["breast"].result_deadline_seconds
    assert monitor.sweep(T0 + timedelta(seconds=due - 1)).expired == 0
    assert monitor.sweep(T0 + timedelta(seconds=due)).expired == 1
    [(_, state, reason)] = versions(database)
    assert state == StudyState.NOT_ANALYSED and "no result before the result deadline" in reason
    report = outbox(database)[-1]  # the PACS is told too: the NOT ANALYSED SR and summary image
    assert report["reason"] == reason and len(report["instances"]) == 4


def claim(database, at):
    with database.session() as session:
        [version] = queries.versions_in(session, StudyState.QUEUED)
        assert store.transition(
            session, version.id, StudyState.QUEUED, StudyState.ANALYSING, at, "claimed", claimed_at=at
        )


def test_a_study_whose_workers_keep_dying_is_not_analysed_after_the_bound(database, settings):
    config = routing.RoutingConfig.load(settings.routing_file)
    monitor = StudyMonitor(database, config, RecordingPublisher(), 60, analysis_max_attempts=3)
    receive(database, [synthetic.dx()], T0)
    monitor.sweep(T0 + timedelta(seconds=31))
    at = T0 + timedelta(seconds=31)
    for attempt in range(1, 4):
        claim(database, at)
        at += timedelta(seconds=61)  # the worker is killed: its lease runs out
        swept = monitor.sweep(at)
        if attempt < 3:
            assert swept.requeued == 1 and versions(database)[0][1] == StudyState.QUEUED
    assert swept.expired == 1
    [(_, state, reason)] = versions(database)
    assert state == StudyState.NOT_ANALYSED
    assert reason.startswith("analysis failed: the worker was lost 3 times") and "normal reading" in reason
    assert outbox(database)[-1]["reason"] == reason


def test_abandoned_analysis_is_queued_again_after_the_lease(database, monitor):
    receive(database, [synthetic.dx()], T0)
    monitor.sweep(T0 + timedelta(seconds=2))
    with database.session() as session:
        [version] = queries.versions_in(session, StudyState.QUEUED)
        assert store.transition(
            session,
            version.id,
            StudyState.QUEUED,
            StudyState.ANALYSING,
            T0,
            "claimed",
            claimed_at=T0,
        )
    assert monitor.sweep(T0 + timedelta(seconds=30)).requeued == 0
    assert monitor.sweep(T0 + timedelta(seconds=61)).requeued == 1
    assert versions(database)[0][1] == StudyState.QUEUED
    assert len(outbox(database)) == 2


def test_recover_requeues_queued_work_whose_message_was_lost(database, monitor, settings):
    receive(database, [synthetic.dx()], T0)
    monitor.sweep(T0 + timedelta(seconds=2))
    with database.session() as session:  # the broker took the message, then lost it
        for message in session.scalars(select(OutboxMessage)):
            message.published_at = T0
    assert monitor.recover(T0 + timedelta(seconds=3)) == 1
    assert len(outbox(database)) == 2
    assert monitor.recover(T0 + timedelta(seconds=4)) == 0  # its message is pending


def test_a_version_no_worker_took_in_time_is_queued_again_visibly(database, monitor):
    """A broker that lost a published message (Redis restarted without persistence): the leader's
    safety net queues the version again after ``queued_republish_seconds``, says so in its history,
    and never duplicates a task still waiting in the outbox."""
    receive(database, [synthetic.dx()], T0)
    monitor.sweep(T0 + timedelta(seconds=2))
    assert monitor.requeue_stale(T0 + timedelta(seconds=400), 300) == 0, "its task is still in the outbox"
    with database.session() as session:  # the broker took the message, then lost it
        for message in session.scalars(select(OutboxMessage)):
            message.published_at = T0
    assert monitor.requeue_stale(T0 + timedelta(seconds=200), 300) == 0, "not yet past the bound"
    assert monitor.requeue_stale(T0 + timedelta(seconds=400), 300) == 1
    assert len(outbox(database)) == 2
    [(_, state, reason)] = versions(database)
    assert state == StudyState.QUEUED and "queued again: no worker took it in 300 s" in reason
    with database.session() as session:
        for message in session.scalars(select(OutboxMessage)):
            message.published_at = T0
    assert monitor.requeue_stale(T0 + timedelta(seconds=500), 300) == 0, "queued again 100 s ago"
    assert monitor.requeue_stale(T0 + timedelta(seconds=701), 300) == 1


def test_recover_restarts_the_quiet_period_of_receiving_studies(database, monitor, settings):
    receive(database, [synthetic.dx()], T0)
    restart = T0 + timedelta(minutes=5)  # the listener was down; nobody could send
    monitor.recover(restart)
    assert monitor.sweep(restart + timedelta(seconds=0.5)).completed == 0
    assert monitor.sweep(restart + timedelta(seconds=1)).completed == 1


def test_every_received_study_is_audited(database):
    receive(database, synthetic.screen(), T0)
    with database.session() as session:
        study = session.scalars(select(Study)).one()
        [event] = session.scalars(select(AuditEvent)).all()
    assert event.study_id == study.id and event.action == "study.received" and event.actor == "dicom:TESTSCU"


def test_a_queued_study_no_longer_routed_after_a_rules_change_goes_conservative(database, monitor, settings):
    receive(database, [synthetic.dx()], T0)
    monitor.sweep(T0 + timedelta(seconds=2))
    with database.session() as session:  # its message was lost, and the rules changed meanwhile
        for message in session.scalars(select(OutboxMessage)):
            message.published_at = T0
    config = routing.RoutingConfig.load(settings.routing_file)
    no_trauma = config.model_copy(
        update={"rules": tuple(r for r in config.rules if r.pipeline != "fracture")}
    )
    StudyMonitor(database, no_trauma, RecordingPublisher(), 60).recover(T0 + timedelta(seconds=3))
    [(_, state, reason)] = versions(database)
    assert state == StudyState.NOT_ANALYSED and reason.startswith("routing changed while it was queued")


def test_another_patient_under_the_same_study_uid_is_a_conflict_not_a_merge(database, monitor):
    ids = synthetic.StudyIds()
    first = synthetic.dx(ids, instance_number=1, patient=synthetic.Patient("PAT-A"))
    other = synthetic.dx(ids, instance_number=2, patient=synthetic.Patient("PAT-B"))
    receive(database, [first, other], T0)
    monitor.sweep(T0 + timedelta(seconds=5))
    [(_, state, reason)] = versions(database)
    assert state == StudyState.NOT_ANALYSED and "another patient" in reason
    with database.session() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "study.patient_mismatch"))
    assert "PAT-" not in event.detail, "no patient IDs in the audit detail"


def test_the_same_patient_with_and_without_an_issuer_is_no_conflict(database, monitor):
    ids = synthetic.StudyIds()
    first = synthetic.dx(ids, instance_number=1)
    second = synthetic.dx(ids, instance_number=2)
    del second.IssuerOfPatientID  # a sender that does not send the issuer
    receive(database, [first, second], T0)
    monitor.sweep(T0 + timedelta(seconds=5))
    assert [state for _, state, _ in versions(database)] == [StudyState.QUEUED]


def test_the_same_patient_id_from_another_issuer_is_another_patient(database, monitor):
    ids = synthetic.StudyIds()
    first = synthetic.dx(ids, instance_number=1)
    second = synthetic.dx(ids, instance_number=2)
    second.IssuerOfPatientID = "HOSPITAL-B"
    receive(database, [first, second], T0)
    monitor.sweep(T0 + timedelta(seconds=5))
    assert [state for _, state, _ in versions(database)] == [StudyState.NOT_ANALYSED]


def test_a_tomosynthesis_only_screen_goes_to_double_reading_not_ignored(database, monitor):
    views = synthetic.screen()
    for ds in views:
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.13.1.3"  # Breast Tomosynthesis Image Storage
    receive(database, views, T0)
    monitor.sweep(T0 + timedelta(hours=1))
    [(_, state, reason)] = versions(database)
    assert state == StudyState.NOT_ANALYSED
    assert "Breast Tomosynthesis" in reason and reason.endswith("double reading")
    with database.session() as session:
        assert session.scalars(select(StudyVersion)).one().pipeline == "breast"


def test_the_instances_routing_sends_to_a_pipeline_are_marked_routed_and_no_others(database, monitor):
    from triage.records.tables import Instance

    ids = synthetic.StudyIds()
    wrist, chest = (
        synthetic.dx(ids, instance_number=1),
        synthetic.dx(ids, body_part="CHEST", instance_number=2),
    )
    receive(database, [wrist, chest], T0)
    monitor.sweep(T0 + timedelta(seconds=5))
    with database.session() as session:
        routed = {i.sop_instance_uid: i.routed for i in session.scalars(select(Instance))}
    assert routed == {wrist.SOPInstanceUID: True, chest.SOPInstanceUID: False}
