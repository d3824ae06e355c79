"""Delivery bookkeeping on a real database: REPORTED on acknowledgement, FAILED after the bound."""

from datetime import timedelta

from sqlalchemy import select

from testkit import synthetic
from tests.dicom_node.test_studies import T0, receive
from triage.records import queries, results, store
from triage.records.tables import AuditEvent, Delivery, DeliveryState, StudyState, StudyVersion


def analysed_version(database):
    receive(database, [synthetic.dx()], T0)
    with database.session() as session:
        [version] = queries.versions_in(session, StudyState.RECEIVING)
        for new, old in (
            (StudyState.COMPLETE, StudyState.RECEIVING),
            (StudyState.QUEUED, StudyState.COMPLETE),
            (StudyState.ANALYSING, StudyState.QUEUED),
            (StudyState.ANALYSED, StudyState.ANALYSING),
        ):
            assert store.transition(session, version.id, old, new, T0)
        results.add_delivery(session, version.id, "sr", "1.2.3.1", "k/sr.dcm", T0)
        results.add_delivery(session, version.id, "sc", "1.2.3.2", "k/sc.dcm", T0)
        return version.id


def deliveries(database):
    with database.session() as session:
        return {d.kind: d for d in session.scalars(select(Delivery))}


def state(database):
    with database.session() as session:
        return session.scalars(select(StudyVersion)).one()


def test_reported_only_when_every_object_is_acknowledged(database):
    analysed_version(database)
    ids = {kind: d.id for kind, d in deliveries(database).items()}
    with database.session() as session:
        store.record_delivery(session, ids["sr"], True, "", T0, max_attempts=3)
    assert state(database).state == StudyState.ANALYSED
    with database.session() as session:
        store.record_delivery(session, ids["sc"], True, "", T0, max_attempts=3)
    assert state(database).state == StudyState.REPORTED
    assert {d.state for d in deliveries(database).values()} == {DeliveryState.DELIVERED}


def test_failures_back_off_then_fail_visibly_and_the_study_goes_conservative(database):
    analysed_version(database)
    sr_id = deliveries(database)["sr"].id
    for attempt in range(1, 4):
        with database.session() as session:
            store.record_delivery(session, sr_id, False, "association rejected", T0, max_attempts=3)
        delivery = deliveries(database)["sr"]
        if attempt < 3:
            assert delivery.state == DeliveryState.PENDING
            assert (
                T0 + timedelta(seconds=2**attempt * 0.5)
                <= delivery.next_attempt_at
                <= T0 + timedelta(seconds=2**attempt * 1.5)
            )
    assert deliveries(database)["sr"].state == DeliveryState.FAILED
    version = state(database)
    assert (
        version.state == StudyState.NOT_ANALYSED
        and "could not be delivered to the PACS after 3 attempts" in version.reason
    )
    with database.session() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "delivery.failed")).all()
    assert "association rejected" in event.detail
