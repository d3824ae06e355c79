"""Results to the RIS as HL7 v2.5.1 ORU^R01 over MLLP, against a RIS in the test process that
validates every message strictly (hl7apy) and answers AA, AE, AR, nothing, or hangs up; on SQLite
and PostgreSQL."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from delivery.ris import RisSender
from testkit.peers import free_port
from testkit.ris import Ris
from tests.delivery.test_pacs import ACK, analysed_version, deliveries
from tests.dicom_node.test_studies import T0
from tests.worklist.conftest import any_database  # noqa: F401 - the fixture, on both engines
from triage.outcomes import BreastOutcome, Decision, FractureOutcome, FractureState, ModelIdentity, Route
from triage.records import deliveries as delivered
from triage.records import results, withdrawals
from triage.records.tables import (
    AuditEvent,
    DeliveryState,
    Hl7Cursor,
    Hl7Message,
    StateChange,
    StudyState,
    StudyVersion,
)
from triage.values import Hl7Peer
from worklist.detail import study_detail
from worklist.metrics import DatabaseCollector

MODEL = ModelIdentity("triage-fracture-lite0", "2.0.0", "f" * 64)
NO_FRACTURE = FractureOutcome(
    state=FractureState.NO_FRACTURE,
    probability=0.031,
    not_enabled={Decision.BOXES: "mAP@50 0.04 below the site's bar of 0.30"},
)


@pytest.fixture
def ris():
    peer = Ris(free_port()).start()
    yield peer
    peer.stop()


def sender(make_settings, database, ris, **overrides):
    settings = make_settings(
        hl7_ris=f"RIS@127.0.0.1:{ris.port}", hl7_sending_facility="ED|NORTH", **overrides
    )
    found = RisSender(database, settings, settings.hl7_ris)
    found.queue_new(T0)  # configured before the studies arrive: the cursor starts here
    return found


def reported(database, outcome=NO_FRACTURE, model=MODEL):
    """A version analysed with ``outcome`` whose summary image and SR the PACS acknowledged."""
    version_id = analysed_version(database)
    with database.session() as session:
        results.add_result(session, version_id, outcome, model, summary="s", software_version="0.1.0", now=T0)
        session.get_one(StudyVersion, version_id).pipeline = outcome.pipeline
    for delivery in deliveries(database).values():
        with database.session() as session:
            delivered.record_delivery(session, delivery.id, ACK, T0, max_attempts=3, deadline_seconds=60)
    return version_id


def messages(database):
    with database.session() as session:
        return list(session.scalars(select(Hl7Message).order_by(Hl7Message.id)))


def test_a_reported_study_goes_to_the_ris_as_a_valid_preliminary_result(make_settings, any_database, ris):  # noqa: F811
    to_ris = sender(make_settings, any_database, ris)
    reported(any_database)
    assert to_ris.tick(T0) == 1
    [received] = ris.received
    assert received.valid, received.problem  # hl7apy's strict 2.5.1 validation, in the RIS
    assert received.raw.startswith("MSH|^~\\&|TRIAGE|ED\\F\\NORTH|RIS||")  # a delimiter escaped
    assert ris.segment("MSH")[8] == "ORU^R01^ORU_R01" and ris.segment("MSH")[11] == "2.5.1"
    assert ris.segment("OBR")[25] == "P", "the AI result is preliminary"
    assert ris.segment("NTE")[3] == "AI-generated triage result, not verified by a radiologist"
    said = ris.observations()
    assert said["STATE"].startswith("NO-FRACTURE^No fracture found; eligible for discharge")
    assert said["STUDY-FRACTURE-SCORE"] == "0.0310"
    assert said["NOT-ENABLED"] == "localisation (boxes): mAP@50 0.04 below the site's bar of 0.30"
    assert said["111001"] == "triage-fracture-lite0" and said["111003"] == "2.0.0"
    assert said["SR-INSTANCE-UID"] == "1.2.3.1"
    with any_database.session() as session:
        study_uid = session.scalars(select(StudyVersion)).one().study.study_instance_uid
    assert said["110180"] == study_uid
    [message] = messages(any_database)
    assert (message.state, message.ack_code, message.attempts) == (DeliveryState.DELIVERED, "AA", 1)
    with any_database.session() as session:
        audited = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "delivery.acknowledged")
        )
        assert f"HL7 ORU^R01 {message.control_id} (P) acknowledged (AA) by the RIS" in list(audited)
    assert to_ris.tick(T0) == 0 and len(ris.received) == 1, "each state change is reported once"


def test_a_withdrawn_verdict_is_corrected_with_a_c_message(make_settings, database, ris):
    to_ris = sender(make_settings, database, ris)
    version_id = reported(database)
    to_ris.tick(T0)
    with database.session() as session:
        assert withdrawals.withdraw(session, version_id, "retracted by admin: wrong patient", T0)
    to_ris.tick(T0)
    assert len(ris.received) == 2 and all(r.valid for r in ris.received)
    assert ris.segment("OBR")[25] == "C" and ris.segment("OBX")[11] == "C"
    said = ris.observations()
    assert said["STATE"].startswith("NOT-ANALYSED^Not analysed by triage; read as usual")
    assert said["REASON-NOT-ANALYSED"] == "result withdrawn: retracted by admin: wrong patient"
    assert "STUDY-FRACTURE-SCORE" not in said and "SR-INSTANCE-UID" not in said


def test_a_screen_reports_its_route_score_and_high_risk(make_settings, database, ris):
    to_ris = sender(make_settings, database, ris)
    outcome = BreastOutcome(score=3, route=Route.SINGLE_READ, probability=0.012, single_read_max_score=5)
    reported(database, outcome, ModelIdentity("triage-breast-lite0", "1.1.0", "e" * 64))
    to_ris.tick(T0)
    said = ris.observations()
    assert said["ROUTE"].startswith("SINGLE-READ^Single reading^99TRIAGE")
    assert (said["EXAM-SCORE"], said["EXAM-MODEL-SCORE"], said["HIGH-RISK"]) == (
        "3",
        "0.0120",
        "N^No^HL70136",
    )
    assert ris.segment("OBR")[4] == "TRIAGE-BREAST^AI triage (breast)^99TRIAGE"


@pytest.mark.parametrize("answer", ["AE", "AR", "silent", "hang_up"])
def test_refusals_and_silence_back_off_then_fail_visibly_leaving_the_study_as_it_is(
    make_settings, database, ris, answer
):
    ris.answer = answer
    timeout = 0.5 if answer == "silent" else 30  # the test RIS validates strictly: slow on a busy CPU
    to_ris = sender(make_settings, database, ris, delivery_max_attempts=2, network_timeout_seconds=timeout)
    reported(database)
    assert to_ris.tick(T0) == 0
    [message] = messages(database)
    assert message.state == DeliveryState.PENDING and message.attempts == 1
    assert message.next_attempt_at > T0, "backed off"
    expected = {
        "AE": "AE: refused by the test RIS",
        "AR": "AR: refused by the test RIS",
        "silent": "no acknowledgement within 0.5 s",
        "hang_up": "the connection closed before an acknowledgement",
    }[answer]
    assert message.last_error == expected
    to_ris.send_due(message.next_attempt_at)
    [message] = messages(database)
    assert message.state == DeliveryState.FAILED and message.attempts == 2
    with database.session() as session:
        failed = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "delivery.failed")
        ).all()
        assert failed == [
            f"HL7 ORU^R01 {message.control_id} (P) not acknowledged by the RIS after 2 attempt(s): {expected}"
        ]
        assert session.scalars(select(StudyVersion.state)).one() == StudyState.REPORTED, (
            "never gates the verdict"
        )


def test_a_correction_waits_until_what_it_corrects_is_acknowledged(make_settings, database, ris):
    ris.answer = "AE"
    to_ris = sender(make_settings, database, ris)
    version_id = reported(database)
    to_ris.tick(T0)
    with database.session() as session:
        withdrawals.withdraw(session, version_id, "wrong side", T0)
    ris.answer = "AA"
    to_ris.queue_new(T0)
    first, correction = messages(database)
    assert (first.result_status, correction.result_status) == ("P", "C")
    to_ris.send_due(T0 + timedelta(seconds=1))  # the first is still backing off: nothing goes
    assert len(ris.received) == 1
    later = T0 + timedelta(hours=1)
    assert to_ris.send_due(later) == 1, "the first, and only once the RIS took it, its correction"
    assert to_ris.send_due(later) == 1
    assert [r.raw.split("\r")[0].split("|")[9] for r in ris.received[1:]] == [
        first.control_id,
        correction.control_id,
    ]


def test_a_ris_configured_later_reports_from_then_on(make_settings, database, ris):
    reported(database)  # before HL7 was configured
    to_ris = sender(make_settings, database, ris)
    assert to_ris.tick(T0) == 0 and ris.received == []


def test_an_hl7_peer_is_parsed_with_a_full_sentence(make_settings):
    assert Hl7Peer.parse("RIS@10.0.0.7:2575") == Hl7Peer(application="RIS", host="10.0.0.7", port=2575)
    with pytest.raises(ValueError, match="is not an HL7 peer: write it as APPLICATION@host:port"):
        Hl7Peer.parse("R|S@10.0.0.7:2575")
    assert make_settings(hl7_ris="").hl7_ris is None


def test_a_change_committed_behind_the_cursor_is_still_reported(make_settings, database, ris):
    """On PostgreSQL a transaction that commits late can carry a lower id than one already read."""
    to_ris = sender(make_settings, database, ris)
    reported(database)
    with database.session() as session:
        cursor = session.scalars(select(Hl7Cursor)).one()
        cursor.last_change_id = session.scalar(select(func.max(StateChange.id))) + 5
    assert to_ris.tick(T0) == 1


def test_the_study_page_and_the_metrics_show_each_message(make_settings, database, ris):
    ris.answer = "AR"
    settings = make_settings()
    to_ris = sender(make_settings, database, ris, delivery_max_attempts=1)
    reported(database)
    to_ris.tick(T0)
    with database.session() as session:
        study_id = session.scalars(select(StudyVersion.study_id)).one()
        [version] = study_detail(session, study_id).versions
    [shown] = version.hl7_messages
    assert (shown.result_status, shown.state, shown.ack_code) == ("P", DeliveryState.FAILED, "AR")
    assert shown.last_error == "AR: refused by the test RIS"
    families = {f.name: f for f in DatabaseCollector(database, settings).collect()}
    assert [(s.labels, s.value) for s in families["triage_hl7_messages"].samples] == [
        ({"state": "FAILED"}, 1)
    ]


def test_a_value_hl7_cannot_carry_fails_that_message_visibly_and_blocks_no_other(
    make_settings, database, ris
):
    to_ris = sender(make_settings, database, ris)
    long_why = {Decision.BOXES: "x|" * 400}  # free text is cut to what the field takes, never refused
    reported(database, NO_FRACTURE.model_copy(update={"not_enabled": long_why}))
    with database.session() as session:  # DICOM's LO allows 64 characters; HL7's HD namespace 20
        session.scalars(select(StudyVersion)).one().study.issuer_of_patient_id = "A-VERY-LONG-ISSUER-OF-IDS"
    assert to_ris.tick(T0) == 0 and ris.received == []
    [message] = messages(database)
    assert (message.state, message.last_error) == (
        DeliveryState.FAILED,
        "could not be built (MaxLengthReached)",
    )
    with database.session() as session:
        session.scalars(select(StudyVersion)).one().study.issuer_of_patient_id = "HOSP"
        withdrawals.withdraw(session, message.version_id, "wrong side", T0)
    assert to_ris.tick(T0) == 1, "the next change goes, as a first result: the RIS never got the failed one"
    assert ris.segment("OBR")[25] == "P"
    said = ris.observations()
    assert said["REASON-NOT-ANALYSED"] == "result withdrawn: wrong side"


def test_free_text_is_cut_to_what_hl7_carries_without_splitting_an_escape():
    from delivery.oru import MAX_TEXT, escaped

    cut = escaped("a|" * 400, MAX_TEXT)
    assert len(cut) <= MAX_TEXT and cut.endswith("\\F\\...") and escaped("a|b") == "a\\F\\b"


@pytest.mark.parametrize(("pipelines", "sent"), [("breast", 1), ("fracture", 0), ("fracture,breast", 1)])
def test_a_ris_for_some_pipelines_gets_only_their_results(make_settings, database, ris, pipelines, sent):
    to_ris = sender(make_settings, database, ris, hl7_ris_pipelines=pipelines)
    screen = BreastOutcome(score=7, route=Route.DOUBLE_READ, probability=0.4, single_read_max_score=5)
    reported(database, screen, ModelIdentity("triage-breast-lite0", "1.1.0", "e" * 64))
    assert to_ris.tick(T0) == sent and len(ris.received) == sent
    with database.session() as session:
        cursor = session.scalars(select(Hl7Cursor)).one()
        assert cursor.last_change_id == session.scalar(select(func.max(StateChange.id))), "past what it read"


def test_a_ris_that_answers_nothing_costs_one_try_per_pass_not_one_per_message(make_settings, database, ris):
    ris.answer = "silent"
    to_ris = sender(make_settings, database, ris, network_timeout_seconds=0.5)
    version_id = reported(database)
    with database.session() as session:
        withdrawals.withdraw(session, version_id, "wrong side", T0)
    to_ris.queue_new(T0)
    with database.session() as session:  # as if another study's: it need not wait for the first
        correction = session.scalars(select(Hl7Message).where(Hl7Message.result_status == "C")).one()
        correction.study_id = _another_study(session)
    assert to_ris.send_due(T0) == 0
    first, second = messages(database)
    assert (first.attempts, second.attempts) == (1, 0), (
        "the second waits for the next pass, its tries unspent"
    )
    assert first.last_error == "no acknowledgement within 0.5 s"


def _another_study(session):
    from triage.records.tables import Study

    study = Study(study_instance_uid="2.25.999")
    session.add(study)
    session.flush()
    return study.id
