"""Storage commitment (PS3.4 Annex J, push model) against a real PACS: Orthanc commits, reports on an
association of its own to triage's listener, and the study is REPORTED only then; an object missing
at commit time is sent again and committed; a PACS that is down or never reports fails the study
conservatively."""

import io
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from delivery.pacs import Deliverer
from dicom_node.listener import Listener
from testkit import phantoms
from testkit.peers import Orthanc, free_port, wait_until
from tests.delivery.test_pacs import queue_written_results
from tests.dicom_node.test_studies import receive
from triage.messages import WITHDRAW_RESULT
from triage.records import commitments, store
from triage.records.tables import (
    AuditEvent,
    Commitment,
    CommitmentState,
    Delivery,
    DeliveryState,
    OutboxMessage,
    StudyState,
    StudyVersion,
)
from triage.values import DicomPeer

pytestmark = pytest.mark.integration


@pytest.fixture
def listener(make_settings):
    settings = make_settings(
        pacs_storage_commitment=True,
        storage_commitment_timeout_seconds=2,
        storage_commitment_max_requests=2,
        delivery_max_attempts=2,
    )
    node = Listener(settings)
    node.start()
    yield node
    node.stop()


def pacs(tmp_path, listener, port=None):
    """Orthanc, knowing triage's AE at the listener's port (or at another, where nobody listens)."""
    return Orthanc(tmp_path / "orthanc", {"triage": ("TRIAGE", "127.0.0.1", port or listener.port)})


def analysed_study(listener, datasets=None, outcome=None) -> int:
    """A study analysed now (by default a trauma study), its result objects written and queued for
    the PACS."""
    database, settings, now = listener.database, listener.settings, listener.database.now()
    datasets = datasets or phantoms.trauma_study(False, seed=5, images=1, size=64)
    receive(database, datasets, now)
    with database.session() as session:
        version = session.scalars(select(StudyVersion)).one()
        for old, new in (
            (StudyState.RECEIVING, StudyState.COMPLETE),
            (StudyState.COMPLETE, StudyState.QUEUED),
            (StudyState.QUEUED, StudyState.ANALYSING),
            (StudyState.ANALYSING, StudyState.ANALYSED),
        ):
            assert store.transition(session, version.id, old, new, now)
        version_id = version.id
    queue_written_results(database, settings, datasets, version_id, now, outcome)
    return version_id


def deliverer(listener, orthanc):
    settings = listener.settings
    return Deliverer(
        listener.database,
        settings.results_dir,
        DicomPeer(ae_title="ORTHANC", host="127.0.0.1", port=orthanc.dicom_port),
        settings.ae_title,
        (settings.delivery_max_attempts, settings.delivery_deadline_seconds),
        timeout_seconds=10,
        commitment=commitments.bounds_of(settings),
    )


def deliver_all(sender, now):
    """Two passes, as the delivery thread makes them: the summary image, then the SR that waits for it."""
    return sender.deliver_due(now) + sender.deliver_due(now)


def version_state(listener):
    with listener.database.session() as session:
        return session.scalars(select(StudyVersion.state)).one()


def requests(listener):
    with listener.database.session() as session:
        return [(c.state, c.detail) for c in session.scalars(select(Commitment).order_by(Commitment.id))]


def test_reported_only_once_the_pacs_commits_every_object(listener, tmp_path):
    orthanc = pacs(tmp_path, listener)
    try:
        analysed_study(listener)
        sender = deliverer(listener, orthanc)
        now = listener.database.now()
        assert deliver_all(sender, now) == 2
        assert version_state(listener) == StudyState.ANALYSED, "acknowledged is not yet committed"
        assert requests(listener) == [(CommitmentState.PENDING, "")]
        assert sender.commit_due(now) == 1
        wait_until(lambda: version_state(listener) == StudyState.REPORTED, timeout=30)
    finally:
        orthanc.stop()
    assert [state for state, _ in requests(listener)] == [CommitmentState.COMMITTED]
    with listener.database.session() as session:
        committed = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "delivery.committed")
        )
        assert list(committed) == ["2 object(s) committed by the PACS"]


def test_a_screens_mammography_cad_sr_is_stored_committed_and_read_back_whole(listener, tmp_path):
    """The PACS keeps the CAD SR a mammography workstation draws its marks from: sent before the
    TID 1500 SR, committed with the rest, and read back from Orthanc as it was written."""
    from pydicom import dcmread

    from inference.cad_codes import MAMMOGRAPHY_CAD_SR
    from triage.outcomes import BreastOutcome

    views = phantoms.screen(None, seed=6, size=64)
    lesion = {"corners": [5.0, 6.0, 30.0, 40.0], "score": 0.6}
    outcome = BreastOutcome.model_validate({
        "score": 7, "probability": 0.6, "single_read_max_score": 5,
        "per_view": [{"sop_instance_uid": ds.SOPInstanceUID, "laterality": ds.ImageLaterality,
                      "view": ds.ViewPosition, "probability": 0.6, "lesions": [lesion] if k == 0 else []}
                     for k, ds in enumerate(views)],
    })  # fmt: skip
    orthanc = pacs(tmp_path, listener)
    try:
        analysed_study(listener, views, outcome)
        with listener.database.session() as session:
            kinds = list(session.scalars(select(Delivery.kind).order_by(Delivery.id)))
            cad_uid = session.scalar(select(Delivery.sop_instance_uid).where(Delivery.kind == "cad"))
        assert kinds == ["sc", "cad", "sr"]
        sender = deliverer(listener, orthanc)
        now = listener.database.now()
        assert deliver_all(sender, now) == 3
        sender.commit_due(now)
        wait_until(lambda: version_state(listener) == StudyState.REPORTED, timeout=30)
        [found] = orthanc.request("POST", "/tools/lookup", cad_uid.encode())
        stored = dcmread(io.BytesIO(orthanc.download(f"/instances/{found['ID']}/file")))
    finally:
        orthanc.stop()
    written = dcmread(listener.settings.results_dir / f"{views[0].StudyInstanceUID}/{cad_uid}.dcm")
    assert stored.SOPClassUID == MAMMOGRAPHY_CAD_SR
    assert stored.ContentSequence == written.ContentSequence, "the content tree as it was written"
    with listener.database.session() as session:
        committed = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "delivery.committed")
        )
        assert list(committed) == ["3 object(s) committed by the PACS"]


def test_an_object_missing_at_commit_time_is_sent_again_and_committed(listener, tmp_path):
    orthanc = pacs(tmp_path, listener)
    try:
        analysed_study(listener)
        sender = deliverer(listener, orthanc)
        now = listener.database.now()
        deliver_all(sender, now)
        with listener.database.session() as session:
            sr_uid = session.scalar(select(Delivery.sop_instance_uid).where(Delivery.kind == "sr"))
        [found] = orthanc.request("POST", "/tools/lookup", sr_uid.encode())
        orthanc.request("DELETE", f"/instances/{found['ID']}")  # lost at the PACS after its C-STORE
        sender.commit_due(now)
        wait_until(lambda: [s for s, _ in requests(listener)] == [CommitmentState.RETRIED], timeout=30)
        with listener.database.session() as session:
            sr = session.scalars(select(Delivery).where(Delivery.kind == "sr")).one()
            assert sr.state == DeliveryState.PENDING
            assert sr.last_error.startswith("not committed by the PACS (failure reason 0x")
        assert version_state(listener) == StudyState.ANALYSED
        now = listener.database.now()
        assert sender.deliver_due(now) == 1, "the SR again, with the same UIDs"
        assert orthanc.request("POST", "/tools/lookup", sr_uid.encode())[0]["Type"] == "Instance"
        sender.commit_due(now)
        wait_until(lambda: version_state(listener) == StudyState.REPORTED, timeout=30)
    finally:
        orthanc.stop()
    assert [s for s, _ in requests(listener)] == [CommitmentState.RETRIED, CommitmentState.COMMITTED]


def test_a_pacs_that_is_down_at_commit_time_fails_the_study_conservatively(listener, tmp_path):
    orthanc = pacs(tmp_path, listener)
    analysed_study(listener)
    sender = deliverer(listener, orthanc)
    now = listener.database.now()
    deliver_all(sender, now)
    orthanc.stop()
    assert sender.commit_due(now) == 0
    assert requests(listener)[0][0] == CommitmentState.PENDING, "backing off"
    sender.commit_due(now + timedelta(hours=1))
    [(state, detail)] = requests(listener)
    assert state == CommitmentState.FAILED
    assert detail.startswith("storage commitment not requested after 2 tries: no association with ORTHANC@")
    assert version_state(listener) == StudyState.NOT_ANALYSED
    with listener.database.session() as session:
        version = session.scalars(select(StudyVersion)).one()
        assert version.reason.startswith("results not committed by the PACS")
        assert version.verdict == "NOT_ANALYSED", "the conservative path: read as usual"
        tasks = session.scalars(select(OutboxMessage.task_name)).all()
    assert WITHDRAW_RESULT in tasks, "what the PACS took of it is to be rejected there"


def test_no_report_in_time_is_asked_again_then_fails_conservatively(listener, tmp_path):
    orthanc = pacs(tmp_path, listener, port=free_port())  # takes requests, cannot report back
    try:
        analysed_study(listener)
        sender = deliverer(listener, orthanc)
        now = listener.database.now()
        deliver_all(sender, now)
        assert sender.commit_due(now) == 1
        later = now + timedelta(seconds=3)
        assert sender.commit_due(later) == 1, "overdue: asked again with a new transaction"
        sender.commit_due(later + timedelta(seconds=3))
    finally:
        orthanc.stop()
    states = [s for s, _ in requests(listener)]
    assert states == [CommitmentState.RETRIED, CommitmentState.FAILED]
    assert (
        requests(listener)[1][1]
        == "no storage commitment report within 2 s, after 2 storage commitment request(s)"
    )
    assert version_state(listener) == StudyState.NOT_ANALYSED


def test_a_report_for_an_unknown_or_settled_transaction_changes_nothing(database):
    from tests.delivery.test_pacs import ACK, analysed_version, deliveries
    from triage.records import deliveries as delivered

    version_id = analysed_version(database)
    bounds = commitments.Bounds(max_requests=2, max_attempts=2, report_timeout_seconds=60)
    now = database.now()
    for delivery in deliveries(database).values():
        with database.session() as session:
            delivered.record_delivery(session, delivery.id, ACK, now, 3, 600, commitment=True)
    with database.session() as session:
        assert not commitments.record_report(session, "2.25.1", {"1.2.3.1", "1.2.3.2"}, {}, now, bounds)
        [request] = session.scalars(select(Commitment)).all()
        uid = request.transaction_uid
    with database.session() as session:  # the report can come before its request is recorded
        assert commitments.record_report(session, uid, {"1.2.3.1", "1.2.3.2"}, {}, now, bounds)
    with database.session() as session:
        commitments.record_request(session, request.id, True, "requested", now, bounds)
        assert not commitments.record_report(session, uid, set(), {"1.2.3.1": 0x0110}, now, bounds)
    with database.session() as session:
        assert session.get_one(Commitment, request.id).state == CommitmentState.COMMITTED
        assert session.get_one(StudyVersion, version_id).state == StudyState.REPORTED


def test_a_version_withdrawn_while_its_commitment_is_awaited_sends_nothing_again(database):
    from tests.delivery.test_pacs import ACK, analysed_version, deliveries
    from triage.records import deliveries as delivered
    from triage.records import withdrawals

    version_id = analysed_version(database)
    bounds = commitments.Bounds(max_requests=3, max_attempts=2, report_timeout_seconds=60)
    now = database.now()
    for delivery in deliveries(database).values():
        with database.session() as session:
            delivered.record_delivery(session, delivery.id, ACK, now, 3, 600, commitment=True)
    with database.session() as session:
        [request] = session.scalars(select(Commitment)).all()
        withdrawals.withdraw(session, version_id, "wrong patient", now)
    with database.session() as session:
        assert commitments.record_report(
            session, request.transaction_uid, set(), {"1.2.3.1": 0x0110}, now, bounds
        )
    with database.session() as session:
        assert session.get_one(Commitment, request.id).state == CommitmentState.RETRIED
        assert {d.state for d in session.scalars(select(Delivery))} == {DeliveryState.DELIVERED}, (
            "none re-sent"
        )
        assert commitments.expire_overdue(session, now, bounds) == 0
        assert session.scalar(select(func.count()).select_from(Commitment)) == 1, "nothing asked again"
