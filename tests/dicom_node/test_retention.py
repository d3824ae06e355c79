"""Retention: originals removed a set time after their study was REPORTED, the
rows, hashes and results kept, audited; unset, every original stays."""

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from dicom_node import routing
from dicom_node.retention import Retention
from dicom_node.studies import StudyMonitor
from testkit import synthetic
from tests.dicom_node.test_studies import RecordingPublisher, receive
from tests.worklist import seed
from tests.worklist.test_api import signed_in
from triage import messages
from triage.records.db import utcnow
from triage.records.tables import (
    AuditEvent,
    DeliveryState,
    Instance,
    OutboxMessage,
    Role,
    StudyState,
    StudyVersion,
)
from worklist.app import create_app


def instances(database):
    with database.session() as session:
        return {i.study_id: i for i in session.scalars(select(Instance))}


def test_originals_leave_storage_after_the_retention_and_nothing_else_does(database, settings):
    def study(state, days_ago, **extra):
        at = utcnow() - timedelta(days=days_ago)
        return seed.add_study(
            database, settings, [synthetic.dx()], pipeline="fracture", state=state, at=at, **extra
        )

    fine = {"outcome": seed.fracture_outcome("NO_FRACTURE", 0.02, {})}
    old, recent = study(StudyState.REPORTED, 40, **fine), study(StudyState.REPORTED, 2, **fine)
    waiting = study(StudyState.NOT_ANALYSED, 40, reason="not analysed: kept for the reading")
    assert Retention(database, settings.storage_dir, None).run() == 0  # unset: keep for good
    assert Retention(database, settings.storage_dir, 30).run() == 1
    found = instances(database)
    assert not (settings.storage_dir / found[old].storage_key).exists() and found[old].removed_at is not None
    for kept in (recent, waiting):
        assert (settings.storage_dir / found[kept].storage_key).exists() and found[kept].removed_at is None
    assert found[old].sha256  # the row and its hash stay
    assert Retention(database, settings.storage_dir, 30).run() == 0  # done once
    with database.session() as session:
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "study.originals_removed")
        ).all()
    assert event.study_id == old and event.detail.startswith("1 originals")

    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(database, settings)) as client:
        headers = signed_in(client, database, "rad", Role.RADIOLOGIST)
        gone = client.get(f"/api/studies/{old}/images/{found[old].sop_instance_uid}", headers=headers)
        assert gone.status_code == 410 and "retention" in gone.json()["detail"]


def test_a_late_image_after_retention_is_not_analysed_on_part_of_its_study(database, settings):
    """The study's earlier images are gone: the new version is NOT ANALYSED, saying why, rather than
    judged on the late image alone; the verdict it replaces is withdrawn and rejected at the PACS."""
    at = utcnow() - timedelta(days=40)
    ids = synthetic.StudyIds()
    outcome = seed.fracture_outcome("NO_FRACTURE", 0.02, {})
    delivered = (DeliveryState.DELIVERED,)
    seed.add_study(
        database, settings, [synthetic.dx(ids)], pipeline="fracture", state=StudyState.REPORTED, at=at,
        outcome=outcome, deliveries=delivered,
    )  # fmt: skip
    assert Retention(database, settings.storage_dir, 30).run() == 1
    now = utcnow()
    receive(database, [synthetic.dx(ids)], now)
    monitor = StudyMonitor(
        database, routing.RoutingConfig.load(settings.routing_file), RecordingPublisher(), 60
    )
    assert monitor.sweep(now + timedelta(seconds=5)).completed == 1
    with database.session() as session:
        found = {v.number: (v.state, v.reason) for v in session.scalars(select(StudyVersion))}
        tasks = [m.task_name for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]
    state, reason = found[2]
    assert state == StudyState.NOT_ANALYSED
    assert reason.startswith("1 earlier image(s) of the study were removed from storage by retention")
    assert found[1][0] == StudyState.NOT_ANALYSED and found[1][1].startswith("result withdrawn")
    assert tasks == [messages.REPORT_NOT_ANALYSED, messages.WITHDRAW_RESULT]


def test_an_original_removed_by_retention_comes_back_when_the_same_bytes_are_sent_again(listener, tmp_path):
    from sqlalchemy import update

    from testkit.peers import storescu
    from triage.records.storage import sha256_of

    [path] = synthetic.write([synthetic.dx()], tmp_path / "in")
    assert storescu(listener.port, path).returncode == 0
    [row] = instances(listener.database).values()
    stored = listener.settings.storage_dir / row.storage_key
    stored.unlink()  # as retention removes it
    with listener.database.session() as session:
        session.execute(update(Instance).where(Instance.id == row.id).values(removed_at=utcnow()))
    assert storescu(listener.port, path).returncode == 0
    [again] = instances(listener.database).values()
    assert again.removed_at is None and sha256_of(stored) == row.sha256, "the original is back, unchanged"
    with listener.database.session() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "study.original_restored"))
    assert event.actor == "dicom:STORESCU" and event.study_id == row.study_id
