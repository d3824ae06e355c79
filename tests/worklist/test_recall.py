"""The Recall queue: outcomes that show a patient an AI decision touched wrongly (a fracture cleared,
a cancer single-read, a recall scored low) head the queue, notify by webhook and e-mail (a local
HTTP receiver and an SMTP sink in the test process) until one takes it, and close only with a
radiologist's note of the contact. SQLite and the real PostgreSQL; synthetic studies."""

import http.server
import json
import socketserver
import threading
from datetime import timedelta
from typing import ClassVar

import pytest
from sqlalchemy import select

from delivery import notify
from testkit.peers import free_port
from tests.worklist import seed
from tests.worklist.test_api import audit_rows, signed_in
from triage.records import readings
from triage.records.status_tables import Discrepancy
from triage.records.tables import FeedbackKind, Role, StudyState, StudyVersion


def reported(database, settings, n, outcome, pipeline="fracture"):
    datasets = seed.trauma(n, True) if pipeline == "fracture" else seed.screen(n)
    return seed.add_study(
        database, settings, datasets, pipeline=pipeline, state=StudyState.REPORTED, outcome=outcome
    )


def read(database, study_id, kind, value, author="local:rad"):
    with database.session() as session:
        readings.add_feedback(
            session,
            study_id=study_id,
            kind=kind,
            value=value,
            boxes=[],
            comment="",
            author=author,
            now=seed.T0,
        )


def found(database):
    with database.reading() as session:
        return (
            session.execute(select(Discrepancy.study_id, Discrepancy.kind, Discrepancy.source)).tuples().all()
        )


def test_outcomes_that_contradict_an_ai_decision_head_the_recall_queue(any_database, settings):
    cleared = reported(any_database, settings, 1, seed.fracture_outcome("NO_FRACTURE", 0.1, {}))
    flagged = reported(any_database, settings, 2, seed.fracture_outcome("DOUBT", 0.4, {}))
    single = reported(any_database, settings, 3, seed.breast_outcome(3), "breast")
    high = reported(any_database, settings, 4, seed.breast_outcome(8), "breast")
    with any_database.reading() as session:
        verdicts = dict(session.execute(select(StudyVersion.study_id, StudyVersion.verdict)).tuples().all())
    assert (verdicts[cleared], verdicts[single]) == ("NO_FRACTURE", "SINGLE_READ")

    read(any_database, cleared, FeedbackKind.FRACTURE, False)
    assert found(any_database) == [], "no fracture: nothing to recall"
    read(any_database, cleared, FeedbackKind.FRACTURE, True)
    read(any_database, cleared, FeedbackKind.FRACTURE, True, author="hl7:EDIS")  # once per study and kind
    read(any_database, flagged, FeedbackKind.FRACTURE, True)  # DOUBT was read: no discrepancy
    read(any_database, single, FeedbackKind.RECALL, True)
    read(any_database, single, FeedbackKind.CANCER, True, author="hl7:PATH")
    read(any_database, high, FeedbackKind.RECALL, True)
    assert sorted(found(any_database)) == sorted([
        (cleared, "CLEARED_FRACTURE", "local:rad"),
        (single, "LOW_SCORE_RECALL", "local:rad"),
        (single, "SINGLE_READ_CANCER", "hl7:PATH"),
    ])  # fmt: skip
    assert len(audit_rows(any_database, "discrepancy.found")) == 3


def test_a_radiologist_closes_one_only_with_a_note_of_the_contact(any_database, settings, client):
    cleared = reported(any_database, settings, 1, seed.fracture_outcome("NO_FRACTURE", 0.1, {}))
    read(any_database, cleared, FeedbackKind.FRACTURE, True)
    radiologist = signed_in(client, any_database, "rad", Role.RADIOLOGIST)
    [item] = client.get("/api/recall", headers=radiologist).json()
    assert (
        item["kind"] == "CLEARED_FRACTURE" and item["patient_id"] == "SYN0001" and item["closed_at"] is None
    )
    assert ("local:rad", cleared, "testclient", "recall queue") in audit_rows(any_database, "worklist.viewed")
    url = f"/api/recall/{item['id']}/close"
    assert client.post(url, json={"note": "x"}, headers=radiologist).status_code == 422
    assert (
        client.post("/api/recall/999999/close", json={"note": "called"}, headers=radiologist).status_code
        == 404
    )
    note = {"note": "Phoned the patient, booked to fracture clinic tomorrow"}
    closed = client.post(url, json=note, headers=radiologist)
    assert closed.status_code == 200 and closed.json()["closed_by"] == "local:rad"
    assert client.post(url, json=note, headers=radiologist).status_code == 409
    assert client.get("/api/recall", headers=radiologist).json() == [], "it left the queue"
    [kept] = client.get("/api/recall", params={"closed": True}, headers=radiologist).json()
    assert kept["contact_note"] == note["note"]
    assert audit_rows(any_database, "discrepancy.closed")[0][1] == cleared


class Receiver(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list] = []

    def do_POST(self):
        Receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


class SmtpSink(socketserver.StreamRequestHandler):
    """Just enough SMTP to take one message at a time."""

    mails: ClassVar[list] = []

    def handle(self):
        self.wfile.write(b"220 sink\r\n")
        data, lines = False, []
        for raw in self.rfile:
            line = raw.decode().rstrip("\r\n")
            if data:
                if line == ".":
                    SmtpSink.mails.append("\n".join(lines))
                    data, lines = False, []
                    self.wfile.write(b"250 ok\r\n")
                else:
                    lines.append(line)
                continue
            command = line.split(" ")[0].upper()
            answers = {
                "EHLO": b"250 sink\r\n",
                "HELO": b"250 sink\r\n",
                "DATA": b"354 go on\r\n",
                "QUIT": b"221 bye\r\n",
            }
            self.wfile.write(answers.get(command, b"250 ok\r\n"))
            data = command == "DATA"
            if command == "QUIT":
                return


@pytest.fixture
def peers():
    servers = [
        http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver),
        socketserver.ThreadingTCPServer(("127.0.0.1", free_port()), SmtpSink),
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.bodies.clear()
    SmtpSink.mails.clear()
    yield [server.server_address[1] for server in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


def test_notifications_go_out_until_one_reaches_someone(any_database, make_settings, peers):
    web, smtp = peers
    down = make_settings(notify_webhook_url=f"http://127.0.0.1:{free_port()}/hook")
    cleared = reported(any_database, down, 1, seed.fracture_outcome("NO_FRACTURE", 0.1, {}))
    read(any_database, cleared, FeedbackKind.FRACTURE, True)
    assert notify.notify_due(down, any_database) == 0
    with any_database.reading() as session:
        row = session.scalars(select(Discrepancy)).one()
        assert row.notified_at is None and row.notify_attempts == 1 and "not reachable" in row.notify_error
        assert row.notify_next_at > any_database.now(), "tried again later"
        waited = row.notify_next_at - any_database.now()
    assert timedelta(seconds=5) < waited <= timedelta(minutes=1)
    with any_database.session() as session:
        session.scalars(select(Discrepancy)).one().notify_next_at = any_database.now()

    up = make_settings(
        notify_webhook_url=f"http://127.0.0.1:{web}/hook", notify_smtp=f"127.0.0.1:{smtp}",
        notify_email_to="fracture-clinic@hospital.example",
    )  # fmt: skip
    assert notify.notify_due(up, any_database) == 1
    [body] = Receiver.bodies
    assert body["kind"] == "CLEARED_FRACTURE" and body["study_id"] == cleared
    assert "SYN0001" not in json.dumps(body) and "Phantom" not in json.dumps(body), "no patient data leaves"
    [mail] = SmtpSink.mails
    assert f"Subject: triage: a patient to recall (CLEARED_FRACTURE, study {cleared})" in mail
    assert "To: fracture-clinic@hospital.example" in mail
    assert notify.notify_due(up, any_database) == 0, "notified once"
    assert len(audit_rows(any_database, "discrepancy.notified")) == 1


def test_interval_cancers_from_the_programmes_list_land_on_the_last_screen(any_database, settings, client):
    single = reported(any_database, settings, 5, seed.breast_outcome(2), "breast")  # screened 2026-01-01
    double = reported(any_database, settings, 6, seed.breast_outcome(9), "breast")
    admin = signed_in(client, any_database, "boss", Role.ADMIN)
    listed = "\n".join([
        "patient_id,diagnosis_date",
        "SYN0005,2026-09-14",  # eight months after a screen sent to one reader
        "SYN0006,2027-02-01",  # after a double-read screen: an outcome, no discrepancy
        "SYN0007,2026-09-14",  # no screen of this patient
        "SYN0005,2029-01-01",  # three years on: not this screen's interval cancer
        "SYN0005,14/09/2026",
    ])  # fmt: skip
    answer = client.post("/api/outcomes/interval-cancers", json={"csv": listed}, headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "matched": 2,
        "unmatched": [
            "line 4: no screen of this patient in the two years before the diagnosis",
            "line 5: no screen of this patient in the two years before the diagnosis",
            "line 6: the diagnosis date is not YYYY-MM-DD",
        ],
    }
    assert found(any_database) == [(single, "SINGLE_READ_CANCER", "local:boss")]
    assert sorted(r[1] for r in audit_rows(any_database, "outcome.received")) == sorted([single, double])
    wrong = client.post("/api/outcomes/interval-cancers", json={"csv": "id,date\n1,2"}, headers=admin)
    assert wrong.status_code == 422 and "patient_id,diagnosis_date" in wrong.text
    ends = 'patient_id,diagnosis_date\r"SYN"9\r,2026-01-02\r'  # the line break the API fuzzing sent
    bare = client.post("/api/outcomes/interval-cancers", json={"csv": ends}, headers=admin)
    assert bare.status_code == 200 and len(bare.json()["unmatched"]) == 2
    huge = "patient_id,diagnosis_date\n" + "9" * 200_000 + ",2026-01-02\n"  # past csv's field limit
    broken = client.post("/api/outcomes/interval-cancers", json={"csv": huge}, headers=admin)
    assert broken.status_code == 422 and "cannot be read as CSV" in broken.text
    radiologist = signed_in(client, any_database, "rad", Role.RADIOLOGIST)
    assert (
        client.post("/api/outcomes/interval-cancers", json={"csv": listed}, headers=radiologist).status_code
        == 403
    )
