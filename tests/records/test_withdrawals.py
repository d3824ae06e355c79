"""Withdrawn verdicts at the PACS: whatever of a withdrawn or failed version the PACS acknowledged is
rejected there, whenever the acknowledgement comes, once per set of acknowledged objects."""

from sqlalchemy import select

from tests.delivery.test_pacs import analysed_version
from tests.dicom_node.test_studies import T0
from triage import messages
from triage.records import deliveries, results, withdrawals
from triage.records.results import ResultObject
from triage.records.tables import AuditEvent, Delivery, DeliveryState, OutboxMessage, StudyState, StudyVersion

ACK = deliveries.Attempt(True, sent_key="k/sc.dcm")
version_with_objects = analysed_version


def rejections_queued(database):
    with database.session() as session:
        return [
            m.payload["study_version_id"]
            for m in session.scalars(
                select(OutboxMessage).where(OutboxMessage.task_name == messages.WITHDRAW_RESULT)
            )
        ]


def delivery(database, kind):
    with database.session() as session:
        return session.scalars(select(Delivery).where(Delivery.kind == kind)).one()


def test_an_acknowledgement_that_lands_after_the_withdrawal_queues_the_rejection(database):
    """The withdrawal lands while the summary image is on the wire: nothing was held yet, so nothing
    was queued; the acknowledgement records what the PACS now holds and queues its rejection."""
    version_id = version_with_objects(database)
    with database.session() as session:
        withdrawn = withdrawals.withdraw(session, version_id, "retracted by admin: wrong patient", T0)
    assert withdrawn is not None and not withdrawn.superseded_at_pacs
    assert delivery(database, "sc").state == DeliveryState.FAILED
    assert rejections_queued(database) == []

    with database.session() as session:
        deliveries.record_delivery(session, delivery(database, "sc").id, ACK, T0, 3, 60)
    assert delivery(database, "sc").state == DeliveryState.DELIVERED, "what the PACS holds, as it is"
    assert rejections_queued(database) == [version_id]
    with database.session() as session:
        assert session.get_one(StudyVersion, version_id).state == StudyState.NOT_ANALYSED


def test_a_delivery_that_fails_for_good_after_the_summary_image_rejects_the_summary_image(database):
    version_id = version_with_objects(database)
    with database.session() as session:
        deliveries.record_delivery(session, delivery(database, "sc").id, ACK, T0, 3, 60)
    assert rejections_queued(database) == [], "a live verdict is not rejected"
    refused = deliveries.Attempt(False, "the peer accepts none of: Comprehensive SR", permanent=True)
    with database.session() as session:
        deliveries.record_delivery(session, delivery(database, "sr").id, refused, T0, 3, 60)
    with database.session() as session:
        assert session.get_one(StudyVersion, version_id).state == StudyState.NOT_ANALYSED
    assert rejections_queued(database) == [version_id]


def test_the_rejection_is_queued_once_per_set_of_acknowledged_objects(database):
    version_id = version_with_objects(database)
    sc = delivery(database, "sc").id
    with database.session() as session:
        deliveries.record_delivery(session, sc, ACK, T0, 3, 60)
        withdrawn = withdrawals.withdraw(session, version_id, "images arrived after it was judged", T0)
    assert withdrawn is not None and withdrawn.superseded_at_pacs
    assert rejections_queued(database) == [version_id]
    with database.session() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "result.withdrawn"))
        assert "rejection note of 1 object(s) queued" in event.detail, "queued, not claimed as done"
        assert withdrawals.queue_unrejected(session, T0) == 1, "no note covers the summary image yet"
        version = session.get_one(StudyVersion, version_id)
        note = withdrawals.rejection_uid(version.study.study_instance_uid, version.number, ["1.2.3.2"])
        results.add_delivery(session, version_id, ResultObject("kos", note, "k/kos.dcm"), T0)
    with database.session() as session:
        assert withdrawals.queue_unrejected(session, T0) == 0
        assert withdrawals.queue_rejection(session, version_id, "again", T0) == 0, "this set is covered"
        sr = session.scalars(select(Delivery).where(Delivery.kind == "sr")).one()
        sr.state, sr.delivered_at = DeliveryState.DELIVERED, T0  # the SR was acknowledged later still
    with database.session() as session:
        assert withdrawals.queue_rejection(session, version_id, "late SR", T0) == 2, "a new set, a new note"
    assert withdrawals.rejection_uid("1.2", 1, ["a", "b"]) == withdrawals.rejection_uid("1.2", 1, ["b", "a"])


def test_what_a_version_without_a_verdict_sent_is_never_rejected(database):
    """A NOT ANALYSED report (the gate stopped the study) is conservative: it stays at the PACS."""
    version_id = version_with_objects(database, last=StudyState.NOT_ANALYSED)
    sc, sr = delivery(database, "sc").id, delivery(database, "sr").id
    with database.session() as session:
        deliveries.record_delivery(session, sc, ACK, T0, 3, 60)
        refused = deliveries.Attempt(False, "refused", permanent=True)
        deliveries.record_delivery(session, sr, refused, T0, 3, 60)
    with database.session() as session:
        assert withdrawals.queue_unrejected(session, T0) == 0
        assert withdrawals.queue_rejection(session, version_id, "why", T0) == 0
    assert rejections_queued(database) == []


def test_a_withdrawal_object_is_retried_past_the_bounds_and_never_fails_its_siblings(database):
    version_id = version_with_objects(database)
    sc = delivery(database, "sc").id
    with database.session() as session:
        deliveries.record_delivery(session, sc, ACK, T0, 3, 60)
        withdrawals.withdraw(session, version_id, "retracted", T0)
        results.add_delivery(session, version_id, ResultObject("withdrawal-sr", "9.1", "k/w.dcm"), T0)
        results.add_delivery(session, version_id, ResultObject("kos", "9.2", "k/kos.dcm"), T0)
    down = deliveries.Attempt(False, "association rejected")
    for _ in range(5):
        withdrawal_sr = delivery(database, "withdrawal-sr").id
        with database.session() as session:
            deliveries.record_delivery(session, withdrawal_sr, down, T0, 3, 0)
    assert delivery(database, "withdrawal-sr").state == DeliveryState.PENDING
    assert delivery(database, "withdrawal-sr").last_error == "association rejected", "visible while it waits"
    assert delivery(database, "kos").state == DeliveryState.PENDING
    refused = deliveries.Attempt(False, "the peer accepts none of: Key Object Selection", permanent=True)
    kos = delivery(database, "kos").id
    with database.session() as session:
        deliveries.record_delivery(session, kos, refused, T0, 3, 60)
    assert delivery(database, "kos").state == DeliveryState.FAILED
    assert delivery(database, "withdrawal-sr").state == DeliveryState.PENDING
    with database.session() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "delivery.failed"))
        assert "may still show" in event.detail
