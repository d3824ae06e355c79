"""Results to the PACS: the bookkeeping on a real database, and real associations with PACS that
refuse a class, drop the association or answer errors."""

import threading
from datetime import timedelta

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from sqlalchemy import select

from delivery.pacs import Deliverer
from inference.reports import ReportWriter
from testkit import phantoms, synthetic
from testkit.peers import free_port
from tests.dicom_node.test_studies import T0, receive
from triage.outcomes import FractureOutcome, ModelIdentity
from triage.records import deliveries as delivered
from triage.records import queries, results, store
from triage.records.results import ResultObject
from triage.records.tables import AuditEvent, Delivery, DeliveryState, StudyState, StudyVersion
from triage.values import DicomPeer

ACK, REFUSED = delivered.Attempt(True, sent_key="k"), delivered.Attempt(False, "association rejected")


def analysed_version(database, last=StudyState.ANALYSED):
    """A version taken to ``last`` (ANALYSED: it has a verdict), its summary image and SR queued."""
    receive(database, [synthetic.dx()], T0)
    with database.session() as session:
        [version] = queries.versions_in(session, StudyState.RECEIVING)
        for new, old in (
            (StudyState.COMPLETE, StudyState.RECEIVING),
            (StudyState.QUEUED, StudyState.COMPLETE),
            (StudyState.ANALYSING, StudyState.QUEUED),
            (last, StudyState.ANALYSING),
        ):
            assert store.transition(session, version.id, old, new, T0)
        results.add_delivery(session, version.id, ResultObject("sc", "1.2.3.2", "k/sc.dcm"), T0)
        results.add_delivery(session, version.id, ResultObject("sr", "1.2.3.1", "k/sr.dcm"), T0)
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
        delivered.record_delivery(session, ids["sc"], ACK, T0, max_attempts=3, deadline_seconds=60)
    assert state(database).state == StudyState.ANALYSED
    with database.session() as session:
        delivered.record_delivery(session, ids["sr"], ACK, T0, max_attempts=3, deadline_seconds=60)
    assert state(database).state == StudyState.REPORTED
    assert {d.state for d in deliveries(database).values()} == {DeliveryState.DELIVERED}
    with database.session() as session:
        acknowledged = session.scalars(
            select(AuditEvent.detail)
            .where(AuditEvent.action == "delivery.acknowledged")
            .order_by(AuditEvent.id)
        ).all()
    assert acknowledged == [
        f"{kind} {uid} acknowledged by the PACS after 1 attempt(s)"
        for kind, uid in (("sc", "1.2.3.2"), ("sr", "1.2.3.1"))
    ]


def test_failures_back_off_then_fail_visibly_and_the_study_goes_conservative(database):
    analysed_version(database)
    sc_id = deliveries(database)["sc"].id
    for attempt in range(1, 4):
        with database.session() as session:
            delivered.record_delivery(session, sc_id, REFUSED, T0, max_attempts=3, deadline_seconds=600)
        delivery = deliveries(database)["sc"]
        if attempt < 3:
            assert delivery.state == DeliveryState.PENDING
            assert (
                T0 + timedelta(seconds=2**attempt * 0.5)
                <= delivery.next_attempt_at
                <= T0 + timedelta(seconds=2**attempt * 1.5)
            )
    assert deliveries(database)["sc"].state == DeliveryState.FAILED
    assert deliveries(database)["sr"].state == DeliveryState.FAILED, "the SR never acts without its summary"
    version = state(database)
    assert version.state == StudyState.NOT_ANALYSED and "not accepted after 3 attempts" in version.reason
    with database.session() as session:
        [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "delivery.failed")).all()
    assert "association rejected" in event.detail


def test_a_delivery_fails_at_its_deadline_whatever_the_count(database):
    analysed_version(database)
    sc_id = deliveries(database)["sc"].id
    with database.session() as session:
        delivered.record_delivery(
            session, sc_id, REFUSED, T0 + timedelta(seconds=30), 100, deadline_seconds=60
        )
    assert deliveries(database)["sc"].state == DeliveryState.PENDING
    with database.session() as session:
        delivered.record_delivery(
            session, sc_id, REFUSED, T0 + timedelta(seconds=61), 100, deadline_seconds=60
        )
    assert deliveries(database)["sc"].state == DeliveryState.FAILED
    assert state(database).state == StudyState.NOT_ANALYSED


def test_a_delivery_no_attempt_judges_fails_at_its_deadline_all_the_same(database):
    """No process tries it (the PACS went from the settings, or the SR waits behind its summary
    image): the leader's safety net fails it at the deadline, and the study goes conservative."""
    analysed_version(database)
    with database.session() as session:
        assert delivered.fail_overdue(session, T0 + timedelta(seconds=30), deadline_seconds=60) == 0
    assert state(database).state == StudyState.ANALYSED
    with database.session() as session:
        assert delivered.fail_overdue(session, T0 + timedelta(seconds=61), deadline_seconds=60) == 1
    assert {d.state for d in deliveries(database).values()} == {DeliveryState.FAILED}
    version = state(database)
    assert version.state == StudyState.NOT_ANALYSED and "60 s delivery deadline" in version.reason


def test_a_permanent_refusal_fails_at_once(database):
    analysed_version(database)
    sc_id = deliveries(database)["sc"].id
    with database.session() as session:
        attempt = delivered.Attempt(False, "the peer accepts none of: Secondary Capture", permanent=True)
        delivered.record_delivery(session, sc_id, attempt, T0, max_attempts=10, deadline_seconds=600)
    assert deliveries(database)["sc"].state == DeliveryState.FAILED
    assert "refused for good" in state(database).reason


def test_the_sr_waits_for_its_summary_image(database):
    analysed_version(database)
    sc_id = deliveries(database)["sc"].id
    with database.session() as session:
        assert [d.kind for d in queries.due_deliveries(session, T0, 10)] == ["sc"]
        delivered.record_delivery(session, sc_id, ACK, T0, 3, 60)
    with database.session() as session:
        assert [d.kind for d in queries.due_deliveries(session, T0, 10)] == ["sr"]


class Pacs:
    """A real DICOM SCP on loopback (pynetdicom) that takes only some SOP classes, and may drop the
    association after some stores or answer with a failure status."""

    def __init__(self, classes, drop_after=None, status=0x0000):
        self.stored, self.port, self._drop_after, self._status = [], free_port(), drop_after, status
        ae = AE(ae_title="PACS")
        ae.add_supported_context(Verification)
        for uid in classes:
            ae.add_supported_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._store)])  # fmt: skip
        self.peer = DicomPeer(ae_title="PACS", host="127.0.0.1", port=self.port)

    def _store(self, event):
        if self._drop_after is not None and len(self.stored) >= self._drop_after:
            threading.Thread(target=event.assoc.abort).start()
            return 0xA700
        if self._status == 0:
            self.stored.append(event.dataset.SOPClassUID)
        return self._status

    def stop(self):
        self._server.shutdown()


def reported_study(database, settings, classes, bounds=(5, 600), **pacs_options):
    """A trauma study analysed with its SR and summary image written, and a PACS that takes ``classes``."""
    datasets = phantoms.trauma_study(False, seed=3, images=1, size=64)
    receive(database, datasets, T0)
    queue_written_results(database, settings, datasets, analysed_version_only(database), T0)
    pacs = Pacs(classes, **pacs_options)
    return pacs, Deliverer(database, settings.results_dir, pacs.peer, "TRIAGE", bounds, timeout_seconds=5)


def queue_written_results(database, settings, datasets, version_id, at, outcome=None):
    """Write a result's objects for ``datasets`` (by default a NO FRACTURE result's SR and summary
    image) and queue them for the PACS."""
    from inference.inputs import read_study
    from triage.messages import AnalyseStudy

    outcome = outcome or FractureOutcome(state="NO_FRACTURE", probability=0.01)
    payload = synthetic.store(datasets, settings.storage_dir, outcome.pipeline, version_id)
    payload = AnalyseStudy(**{**payload.model_dump(), "study_version_id": version_id})
    objects = ReportWriter(settings.results_dir).write(
        payload, read_study(payload, settings.storage_dir), outcome, ModelIdentity("m", "1", "0" * 64), ""
    )
    with database.session() as session:
        for written in objects:
            results.add_delivery(session, version_id, written, at)


def analysed_version_only(database):
    with database.session() as session:
        version = session.scalars(select(StudyVersion).order_by(StudyVersion.id.desc())).first()
        for new, old in (
            (StudyState.COMPLETE, StudyState.RECEIVING),
            (StudyState.QUEUED, StudyState.COMPLETE),
            (StudyState.ANALYSING, StudyState.QUEUED),
            (StudyState.ANALYSED, StudyState.ANALYSING),
        ):
            store.transition(session, version.id, old, new, T0)
        return version.id


def deliver_until_quiet(deliverer, rounds=6):
    """Run the delivery loop as the listener's thread does, moving the clock past every backoff."""
    for n in range(rounds):
        deliverer.deliver_due(T0 + timedelta(hours=n))


SC = "1.2.840.10008.5.1.4.1.1.7"
SR_3D, SR = "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.mark.integration
def test_a_pacs_that_refuses_comprehensive_3d_sr_gets_comprehensive_sr(database, settings):
    pacs, deliverer = reported_study(database, settings, [SC, SR])
    try:
        deliver_until_quiet(deliverer)
    finally:
        pacs.stop()
    assert pacs.stored == [SC, SR], "summary image first, the SR last, in the class the PACS takes"
    assert state(database).state == StudyState.REPORTED
    assert deliveries(database)["sr"].sent_storage_key.endswith(".dcm")


@pytest.mark.integration
def test_a_pacs_that_takes_no_sr_class_fails_it_for_good_at_once(database, settings):
    pacs, deliverer = reported_study(database, settings, [SC])
    try:
        deliver_until_quiet(deliverer, rounds=2)
    finally:
        pacs.stop()
    found = deliveries(database)
    assert found["sc"].state == DeliveryState.DELIVERED and found["sr"].state == DeliveryState.FAILED
    assert found["sr"].attempts == 1 and "accepts none of" in found["sr"].last_error
    assert state(database).state == StudyState.NOT_ANALYSED


@pytest.mark.integration
def test_an_association_dropped_mid_batch_is_recorded_and_retried(database, settings):
    pacs, deliverer = reported_study(database, settings, [SC, SR_3D, SR], drop_after=0)
    try:
        deliverer.deliver_due(T0)
    finally:
        pacs.stop()
    sc = deliveries(database)["sc"]
    assert sc.attempts == 1 and sc.state == DeliveryState.PENDING and sc.last_error
    assert state(database).state == StudyState.ANALYSED


@pytest.mark.integration
def test_every_refusal_is_counted_and_none_loops(database, settings):
    """The PACS answers 0xA700 (out of resources) for everything: each try is counted, then backs off."""
    pacs, deliverer = reported_study(database, settings, [SC, SR_3D], (4, 10**6), status=0xA700)
    try:
        deliver_until_quiet(deliverer, rounds=3)
        sc = deliveries(database)["sc"]
        assert sc.attempts == 3 and "0xA700" in sc.last_error and sc.state == DeliveryState.PENDING
        assert deliveries(database)["sr"].attempts == 0, "the SR waits for its summary image"
        deliver_until_quiet(deliverer, rounds=1)  # now at T0: the backoff holds it back
        assert deliveries(database)["sc"].attempts == 3
        deliverer.deliver_due(T0 + timedelta(days=1))
    finally:
        pacs.stop()
    assert deliveries(database)["sc"].state == DeliveryState.FAILED
    assert state(database).state == StudyState.NOT_ANALYSED


@pytest.mark.integration
def test_a_deliverer_that_loses_the_lead_mid_pass_stops_within_a_few_objects(database, settings):
    """Two leaders must never deliver for a whole pass: the lead is checked before each few objects."""
    pacs, _ = reported_study(database, settings, [SC, SR_3D])
    reported_study(database, settings, [SC, SR_3D])[0].stop()  # a second study's objects, due as well
    answers = iter([True, False])
    deliverer = Deliverer(
        database, settings.results_dir, pacs.peer, "TRIAGE", (5, 600), timeout_seconds=5,
        leading=lambda: next(answers, False), objects_per_check=1,
    )  # fmt: skip
    try:
        assert deliverer.deliver_due(T0) == 1
    finally:
        pacs.stop()
    assert pacs.stored == [SC], "one object, then the lead was gone"
    with database.session() as session:
        attempted = [d.attempts for d in session.scalars(select(Delivery).order_by(Delivery.id))]
    assert sorted(attempted) == [0, 0, 0, 1], "what it did not try is left, untouched, to the leader"
