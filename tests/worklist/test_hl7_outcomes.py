"""Outcomes back over HL7: a client in the test process sends ORU^R01 messages over MLLP to triage's
listener, on SQLite and on the real PostgreSQL. Discharge diagnoses, BI-RADS and pathology are read
into the study they name (by UID or accession, never by name), unknown and malformed messages are
kept and answered, a re-sent message is not counted twice, and cleared fractures coming back this
way switch the rule-out off. Synthetic studies and messages."""

import pytest
from sqlalchemy import select

from delivery import mllp
from delivery.outcomes_in import OutcomesListener, read
from tests.worklist import seed
from tests.worklist.test_api import signed_in
from triage.outcomes import Decision
from triage.pipelines import Pipeline
from triage.records import switches
from triage.records.status_tables import InboundMessage
from triage.records.tables import Feedback, FeedbackKind, Role, StudyState
from triage.values import Hl7Peer


def oru(control_id, *obx, accession="", study_uid="", patient_id="", sender="EDIS", kind="ORU^R01^ORU_R01"):
    segments = [
        f"MSH|^~\\&|{sender}|HOSP|TRIAGE|HOSP|20261207120000||{kind}|{control_id}|P|2.5.1",
        f"PID|1||{patient_id}^^^HOSP||Synthetic^Patient",
        f"OBR|1||F{control_id}|24627-2^Radiograph^LN|||20261207|||||||||||{accession}",
        *(
            f"OBX|{n}|{value}||||||F".replace("||||||F", f"||||||{status}")
            for n, (value, status) in enumerate(obx, 1)
        ),
    ]
    if study_uid:
        segments.append(f"ZDS|{study_uid}^^Application^DICOM")
    return "\r".join(segments)


def icd10(code):
    return f"CWE|11450-4^Problem list^LN||{code}^diagnosis^I10", "F"


@pytest.mark.parametrize(
    ("observations", "expected"),
    [
        ([icd10("S52.5")], [(FeedbackKind.FRACTURE, True, "ICD-10 S52.5")]),
        ([icd10("J18.9"), icd10("S72.00")], [(FeedbackKind.FRACTURE, True, "ICD-10 S72.00")]),
        ([icd10("S60.2")], [(FeedbackKind.FRACTURE, False, "ICD-10 S60.2")]),  # a contusion
        (
            [("CWE|36625-2^BI-RADS assessment^LN||4^Suspicious^ACR", "F")],
            [(FeedbackKind.RECALL, True, "BI-RADS 4")],
        ),
        ([("NM|BIRADS^BI-RADS category^L||1", "F")], [(FeedbackKind.RECALL, False, "BI-RADS 1")]),
        (
            [("CWE|22637-3^Pathology diagnosis^LN||363346000^Malignant^SCT", "F")],
            [(FeedbackKind.CANCER, True, "SNOMED CT 363346000")],
        ),
        (
            [("CWE|CANCER^Cancer^99TRIAGE||N^No^HL70136", "F")],
            [(FeedbackKind.CANCER, False, "CANCER N (99TRIAGE)")],
        ),
        ([(icd10("S52.5")[0], "P")], []),  # preliminary: not an outcome
    ],
)
def test_what_triage_reads_of_a_result(observations, expected):
    found = read(oru("M1", *observations, accession="ACC1"))
    assert found.problem == "" and found.accession_number == "ACC1" and found.sending_application == "EDIS"
    assert [(o.kind, o.value, o.said) for o in found.observations] == expected


def test_a_message_triage_does_not_read_says_why():
    assert read("this is not HL7").problem.startswith("not an HL7 v2 message")
    adt = read(oru("M2", icd10("S52.5"), kind="ADT^A03^ADT_A03"))
    assert adt.problem == "ADT^A03^ADT_A03: triage reads ORU^R01" and adt.control_id == "M2"


@pytest.fixture
def outcomes_listener(any_database, make_settings):
    settings = make_settings(hl7_outcomes_port=0)
    listener = OutcomesListener(settings, any_database)
    listener.start()
    yield Hl7Peer(application="TRIAGE", host="127.0.0.1", port=listener.port), settings
    listener.stop()


def send(peer, message, control_id):
    return mllp.send(peer, message, control_id, timeout_seconds=10)


def cleared_fracture_study(database, settings, n):
    outcome = seed.fracture_outcome("NO_FRACTURE", 0.1, {}).model_copy(
        update={"claims": {Decision.RULE_OUT: 0.99}}
    )
    datasets = seed.trauma(n, True)
    study_id = seed.add_study(
        database, settings, datasets, pipeline="fracture", state=StudyState.REPORTED, outcome=outcome
    )
    return study_id, str(datasets[0].StudyInstanceUID)


def feedback(database):
    with database.reading() as session:
        return (
            session.execute(select(Feedback.study_id, Feedback.kind, Feedback.value, Feedback.author))
            .tuples()
            .all()
        )


def inbound(database):
    with database.reading() as session:
        return (
            session.execute(
                select(InboundMessage.control_id, InboundMessage.state, InboundMessage.study_id).order_by(
                    InboundMessage.id
                )
            )
            .tuples()
            .all()
        )


def test_discharge_diagnoses_come_back_as_outcomes_and_throw_the_switch(outcomes_listener, any_database):
    peer, settings = outcomes_listener
    first, first_uid = cleared_fracture_study(any_database, settings, 1)
    second, _ = cleared_fracture_study(any_database, settings, 2)

    answer = send(peer, oru("D1", icd10("S52.5"), study_uid=first_uid, patient_id="SYN0001"), "D1")
    assert answer.accepted and answer.code == "AA"
    assert feedback(any_database) == [(first, FeedbackKind.FRACTURE, True, "hl7:EDIS")]
    again = send(peer, oru("D1", icd10("S52.5"), study_uid=first_uid), "D1")
    assert again.code == "AA" and len(feedback(any_database)) == 1, "a re-sent message counts once"
    with any_database.reading() as session:
        assert switches.switched_off(session, Pipeline.FRACTURE) == {}

    answer = send(peer, oru("D2", icd10("S62.1"), accession="ACC0002", patient_id="SYN0002"), "D2")
    assert answer.code == "AA"
    assert (second, FeedbackKind.FRACTURE, True, "hl7:EDIS") in feedback(any_database)
    with any_database.reading() as session:
        why = switches.switched_off(session, Pipeline.FRACTURE)[Decision.RULE_OUT]
    assert "2 fractures on studies cleared as NO FRACTURE" in why
    assert inbound(any_database) == [("D1", "MATCHED", first), ("D2", "MATCHED", second)]


def test_unknown_mismatched_and_malformed_messages_are_kept_and_answered(
    outcomes_listener, any_database, client
):
    peer, settings = outcomes_listener
    study_id, uid = cleared_fracture_study(any_database, settings, 3)
    assert send(peer, oru("U1", icd10("S52.5"), accession="NOSUCH"), "U1").code == "AA"
    wrong_patient = oru("U2", icd10("S52.5"), study_uid=uid, patient_id="SOMEONE-ELSE")
    assert send(peer, wrong_patient, "U2").code == "AA"
    assert send(peer, oru("U3", ("CWE|X^Other^L||1^one^L", "F"), study_uid=uid), "U3").code == "AA"
    assert send(peer, "MSH|^~\\&|EDIS|HOSP|TRIAGE||20261207||ADT^A01|U4|P|2.5.1", "U4").code == "AR"
    assert send(peer, "not HL7 at all", "").code == "AR"
    assert feedback(any_database) == [], "nothing read into a study"
    assert inbound(any_database) == [
        ("U1", "UNMATCHED", None), ("U2", "UNMATCHED", study_id), ("U3", "UNMATCHED", study_id),
        ("U4", "REJECTED", None), (None, "REJECTED", None),
    ]  # fmt: skip

    admin = signed_in(client, any_database, "boss", Role.ADMIN)
    listed = client.get("/api/outcomes", params={"state": "UNMATCHED"}, headers=admin)
    assert listed.status_code == 200
    by_id = {m["control_id"]: m for m in listed.json()}
    assert set(by_id) == {"U1", "U2", "U3"}
    assert by_id["U1"]["detail"] == "no study with this Study Instance UID or accession number"
    assert by_id["U2"]["detail"] == "the patient identifier differs from the study's: not read"
    assert "not an outcome triage reads" in by_id["U3"]["detail"] and "SOMEONE-ELSE" in by_id["U2"]["raw"]
    radiologist = signed_in(client, any_database, "rad", Role.RADIOLOGIST)
    assert client.get("/api/outcomes", headers=radiologist).status_code == 403
