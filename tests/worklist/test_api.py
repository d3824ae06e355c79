"""The worklist API on SQLite and on the machine's real PostgreSQL: queues, detail, images,
feedback, labels, accounts, roles, audit, health and metrics."""

import io
import json
import logging

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from tests.worklist import seed
from triage.records.accounts import add_user
from triage.records.tables import ApiSession, AuditEvent, Feedback, Role
from worklist.app import create_app

PASSWORD = "correct horse battery staple"


@pytest.fixture
def ids(any_database, settings):
    return seed.worklist_of_every_kind(any_database, settings)


def account(database, name, *roles):
    with database.session() as session:
        add_user(session, name, PASSWORD, frozenset(roles), actor="test")


def signed_in(client, database, name, *roles):
    account(database, name, *roles)
    response = client.post("/api/session", json={"username": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture
def radiologist(client, any_database):
    return signed_in(client, any_database, "rad", Role.RADIOLOGIST)


def queue(client, headers, name, **params):
    response = client.get("/api/worklist", params={"queue": name, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def audit_rows(database, action):
    with database.session() as session:
        return [
            (e.actor, e.study_id, e.source, e.detail)
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/worklist"),
        ("GET", "/api/worklist/revision"),
        ("GET", "/api/studies/1"),
        ("GET", "/api/studies/1/images/1.2.3"),
        ("POST", "/api/studies/1/feedback"),
        ("GET", "/api/labels"),
        ("GET", "/api/audit"),
        ("GET", "/api/users"),
        ("GET", "/api/me"),
    ],
)
def test_patient_data_needs_a_signed_in_user(client, method, path):
    response = client.request(method, path, headers={"Authorization": "Bearer not-a-session"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.request(method, path).status_code == 401


def test_each_role_reaches_only_its_own_routes(client, any_database, ids):
    engineer = signed_in(client, any_database, "eng", Role.ML_ENGINEER)
    radiologist = signed_in(client, any_database, "rad", Role.RADIOLOGIST)
    admin = signed_in(client, any_database, "adm", Role.ADMIN)
    assert client.get("/api/worklist", headers=engineer).status_code == 403
    assert client.get(f"/api/studies/{ids['fracture']}", headers=admin).status_code == 403
    assert client.get("/api/labels", headers=radiologist).status_code == 403
    assert client.get("/api/audit", headers=radiologist).status_code == 403
    assert client.get("/api/users", headers=engineer).status_code == 403
    assert client.get("/api/labels", headers=engineer).status_code == 200
    assert client.get("/api/audit", headers=admin).status_code == 200


def test_a_wrong_password_is_refused_and_audited_and_sign_out_ends_the_session(client, any_database):
    account(any_database, "rad", Role.RADIOLOGIST)
    refused = client.post("/api/session", json={"username": "rad", "password": "wrong password!"})
    unknown = client.post("/api/session", json={"username": "nobody", "password": PASSWORD})
    assert refused.status_code == unknown.status_code == 401
    assert len(audit_rows(any_database, "session.refused")) == 2
    token = client.post("/api/session", json={"username": "rad", "password": PASSWORD}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/me", headers=headers).json() == {"name": "local:rad", "roles": ["radiologist"]}
    with any_database.session() as session:
        stored = session.scalars(select(ApiSession.token_sha256)).all()
    assert token not in stored  # only a hash of the token is kept
    assert client.delete("/api/session", headers=headers).status_code == 204
    assert client.get("/api/me", headers=headers).status_code == 401


def test_trauma_queue_puts_fracture_and_doubt_first_then_arrival(client, radiologist, ids):
    page = queue(client, radiologist, "trauma")
    order = [item["study_id"] for item in page["items"]]
    assert order == [ids["fracture"], ids["doubt"], ids["no_fracture"], ids["delivery_failed"]]
    by_id = {item["study_id"]: item for item in page["items"]}
    assert by_id[ids["fracture"]]["verdict"] == "FRACTURE"
    assert by_id[ids["no_fracture"]]["eligible_for_discharge"] is True
    assert by_id[ids["fracture"]]["model_name"] == "triage-fracture-phantom"
    assert by_id[ids["fracture"]]["model_version"] == "0.1.0"


def test_a_failed_delivery_never_shows_as_no_fracture(client, radiologist, ids):
    item = next(
        i for i in queue(client, radiologist, "trauma")["items"] if i["study_id"] == ids["delivery_failed"]
    )
    assert item["verdict"] == "NOT_ANALYSED" and item["verdict_label"] == "NOT ANALYSED"
    assert item["eligible_for_discharge"] is False
    assert item["delivery"] == "failed"
    assert "could not be delivered" in item["reason"]


def test_no_fracture_is_also_in_the_over_read_queue(client, radiologist, ids):
    items = queue(client, radiologist, "over_read")["items"]
    assert [i["study_id"] for i in items] == [ids["no_fracture"]]


def test_screening_queues_route_by_score_with_the_threshold_in_force(client, radiologist, ids):
    assert [i["study_id"] for i in queue(client, radiologist, "single_read")["items"]] == [ids["single"]]
    double = [i["study_id"] for i in queue(client, radiologist, "double_read")["items"]]
    assert double == [ids["high_risk"], ids["screen_not_analysed"]]  # HIGH_RISK first
    high = queue(client, radiologist, "high_risk")
    assert [i["study_id"] for i in high["items"]] == [ids["high_risk"]]
    assert high["items"][0]["score"] == 10 and high["items"][0]["single_read_max_score"] == 5
    assert high["single_read_max_score"] == 5


def test_not_analysed_queue_gives_reasons_and_all_shows_ignored(client, radiologist, ids):
    items = queue(client, radiologist, "not_analysed")["items"]
    assert {i["study_id"] for i in items} == {ids["delivery_failed"], ids["screen_not_analysed"]}
    assert all(i["reason"] for i in items)
    everything = {i["study_id"]: i for i in queue(client, radiologist, "all")["items"]}
    assert everything[ids["ignored"]]["verdict"] == "IGNORED"
    assert ids["ignored"] not in {i["study_id"] for i in queue(client, radiologist, "trauma")["items"]}


def test_search_state_and_date_filters(client, radiologist, ids):
    found = queue(client, radiologist, "all", search="patient3")["items"]
    assert [i["study_id"] for i in found] == [ids["fracture"]]
    assert [i["study_id"] for i in queue(client, radiologist, "all", search="ACC0005")["items"]] == [
        ids["single"]
    ]
    analysed = queue(client, radiologist, "all", state="ANALYSED")["items"]
    assert [i["study_id"] for i in analysed] == [ids["high_risk"]]
    late = queue(client, radiologist, "all", received_from=(seed.T0.replace(minute=5)).isoformat())["items"]
    assert {i["study_id"] for i in late} == {ids["high_risk"], ids["screen_not_analysed"], ids["ignored"]}


def test_every_listed_study_is_audited_as_viewed(client, any_database, radiologist, ids):
    items = queue(client, radiologist, "over_read")["items"]
    rows = audit_rows(any_database, "worklist.viewed")
    assert [(actor, study_id) for actor, study_id, _, _ in rows] == [("local:rad", items[0]["study_id"])]
    assert rows[0][2] == "testclient"  # from where


def test_study_detail_shows_history_model_deliveries_and_marks(client, any_database, radiologist, ids):
    detail = client.get(f"/api/studies/{ids['doubt']}", headers=radiologist).json()
    history = [change["state"] for change in detail["versions"][0]["history"]]
    assert history == ["RECEIVING", "COMPLETE", "QUEUED", "ANALYSING", "ANALYSED", "REPORTED"]
    result = detail["versions"][0]["result"]
    assert (result["model_name"], result["model_version"]) == ("triage-fracture-phantom", "0.1.0")
    assert detail["versions"][0]["deliveries"][0]["state"] == "DELIVERED"
    assert detail["instances"][0]["marks"] == [
        {"corners": [60.0, 60.0, 120.0, 120.0], "score": 0.4, "kind": "doubt"}
    ]
    fracture = client.get(f"/api/studies/{ids['fracture']}", headers=radiologist).json()
    assert fracture["instances"][0]["marks"][0]["kind"] == "fracture"
    failed = client.get(f"/api/studies/{ids['delivery_failed']}", headers=radiologist).json()
    assert failed["versions"][0]["deliveries"][0]["state"] == "FAILED"
    assert failed["instances"][0]["marks"] == []  # a result no one received draws nothing
    assert [row[1] for row in audit_rows(any_database, "study.viewed")] == [
        ids["doubt"],
        ids["fracture"],
        ids["delivery_failed"],
    ]
    assert client.get("/api/studies/999999", headers=radiologist).status_code == 404


def test_images_are_rendered_from_dicom_and_audited(client, any_database, radiologist, ids):
    detail = client.get(f"/api/studies/{ids['fracture']}", headers=radiologist).json()
    uid = detail["instances"][0]["sop_instance_uid"]
    response = client.get(
        f"/api/studies/{ids['fracture']}/images/{uid}", params={"size": 128}, headers=radiologist
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert (response.headers["x-source-columns"], response.headers["x-source-rows"]) == ("256", "256")
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (128, 128) and image.mode == "L"
    assert len(np.unique(np.asarray(image))) > 16  # windowed, not a blank or saturated square
    assert audit_rows(any_database, "image.viewed")[0][3] == uid
    other = client.get(f"/api/studies/{ids['doubt']}/images/{uid}", headers=radiologist)
    assert other.status_code == 404  # an image is only reachable through its own study


def test_feedback_is_stored_with_who_and_when_linked_to_its_result(client, any_database, radiologist, ids):
    uid = client.get(f"/api/studies/{ids['doubt']}", headers=radiologist).json()["instances"][0][
        "sop_instance_uid"
    ]
    body = {
        "kind": "FRACTURE",
        "value": True,
        "boxes": [{"sop_instance_uid": uid, "corners": [50, 50, 130, 125]}],
    }
    response = client.post(f"/api/studies/{ids['doubt']}/feedback", json=body, headers=radiologist)
    assert response.status_code == 201, response.text
    reading = response.json()
    assert reading["author"] == "local:rad" and reading["judges_model"] == "triage-fracture-phantom 0.1.0"
    with any_database.session() as session:
        row = session.scalars(select(Feedback)).one()
        assert row.result_id is not None and row.boxes[0]["corners"] == [50, 50, 130, 125]
    detail = client.get(f"/api/studies/{ids['doubt']}", headers=radiologist).json()
    assert detail["feedback"][0]["label_id"] == reading["label_id"]
    assert queue(client, radiologist, "trauma")["items"][1]["feedback_count"] == 1


@pytest.mark.parametrize(
    ("study", "body", "status", "words"),
    [
        ("doubt", {"kind": "RECALL", "value": True}, 422, "does not fit"),
        ("single", {"kind": "FRACTURE", "value": False}, 422, "does not fit"),
        ("ignored", {"kind": "FRACTURE", "value": False}, 422, "does not fit"),
        (
            "doubt",
            {
                "kind": "FRACTURE",
                "value": True,
                "boxes": [{"sop_instance_uid": "1.2.3", "corners": [0, 0, 9, 9]}],
            },
            422,
            "not part",
        ),
        (
            "doubt",
            {
                "kind": "FRACTURE",
                "value": True,
                "boxes": [{"sop_instance_uid": "1.2", "corners": [9, 0, 1, 9]}],
            },
            422,
            "x0 < x1",
        ),
        ("doubt", {"kind": "FRACTURE", "value": True, "version": 7}, 422, "no version 7"),
        ("doubt", {"kind": "maybe", "value": True}, 422, ""),
    ],
)
def test_feedback_that_does_not_fit_gets_a_reason(client, radiologist, ids, study, body, status, words):
    response = client.post(f"/api/studies/{ids[study]}/feedback", json=body, headers=radiologist)
    assert response.status_code == status
    assert words in json.dumps(response.json())


def test_screens_take_recall_and_later_the_outcome(client, radiologist, ids):
    for kind, value in (("RECALL", True), ("CANCER", False)):
        body = {"kind": kind, "value": value}
        assert (
            client.post(
                f"/api/studies/{ids['high_risk']}/feedback", json=body, headers=radiologist
            ).status_code
            == 201
        )
    detail = client.get(f"/api/studies/{ids['high_risk']}", headers=radiologist).json()
    assert [(f["kind"], f["value"]) for f in detail["feedback"]] == [("RECALL", True), ("CANCER", False)]


def test_labels_export_without_patient_identity(client, any_database, radiologist, ids):
    uid = client.get(f"/api/studies/{ids['doubt']}", headers=radiologist).json()["instances"][0][
        "sop_instance_uid"
    ]
    box = {"sop_instance_uid": uid, "corners": [1, 2, 30, 40]}
    client.post(
        f"/api/studies/{ids['doubt']}/feedback",
        json={"kind": "FRACTURE", "value": True, "boxes": [box]},
        headers=radiologist,
    )
    client.post(
        f"/api/studies/{ids['single']}/feedback",
        json={"kind": "RECALL", "value": False, "comment": "Mrs Phantom"},
        headers=radiologist,
    )
    engineer = signed_in(client, any_database, "eng", Role.ML_ENGINEER)
    labels = client.get("/api/labels", headers=engineer).json()
    text = json.dumps(labels)
    for identity in ("Phantom", "SYN0002", "ACC0002", "19600101", uid, "Mrs"):
        assert identity not in text
    assert [(label["pipeline"], label["kind"], label["value"]) for label in labels] == [
        ("fracture", "FRACTURE", True),
        ("breast", "RECALL", False),
    ]
    assert (
        labels[0]["boxes"][0]["corners"] == [1.0, 2.0, 30.0, 40.0]
        and labels[0]["boxes"][0]["laterality"] == "R"
    )
    assert labels[0]["patient_identity_removed"] == "YES"
    assert labels[0]["model_version"] == "0.1.0" and labels[0]["ai_verdict"] == "DOUBT"
    assert client.get("/api/labels", headers=engineer).json()[0]["patient_key"] == labels[0]["patient_key"]
    csv = client.get("/api/labels", params={"format": "csv"}, headers=engineer)
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("label_id,patient_key,exam_key,pipeline,kind,value")
    assert len(csv.text.splitlines()) == 3
    assert [row[3] for row in audit_rows(any_database, "labels.exported")] == [
        "2 labels, json",
        "2 labels, json",
        "2 labels, csv",
    ]


def test_an_admin_lists_who_accessed_a_patients_studies(client, any_database, radiologist, ids):
    client.get(f"/api/studies/{ids['fracture']}", headers=radiologist)
    admin = signed_in(client, any_database, "adm", Role.ADMIN)
    entries = client.get("/api/audit", params={"patient_id": "SYN0003"}, headers=admin).json()
    viewed = [(e["actor"], e["action"], e["study_id"]) for e in entries if e["action"] == "study.viewed"]
    assert viewed == [("local:rad", "study.viewed", ids["fracture"])]
    assert all(e["patient_id"] == "SYN0003" for e in entries)
    assert audit_rows(any_database, "audit.viewed")[0][:2] == ("local:adm", ids["fracture"])


def test_admin_manages_accounts(client, any_database):
    admin = signed_in(client, any_database, "adm", Role.ADMIN)
    new = {"username": "dr.jensen", "password": "a long enough secret", "roles": ["radiologist"]}
    assert client.post("/api/users", json=new, headers=admin).status_code == 201
    assert client.post("/api/users", json=new, headers=admin).status_code == 409
    assert (
        client.post(
            "/api/users", json={**new, "username": "x", "password": "short"}, headers=admin
        ).status_code
        == 422
    )
    token = client.post(
        "/api/session", json={"username": "dr.jensen", "password": "a long enough secret"}
    ).json()["token"]
    assert [u["username"] for u in client.get("/api/users", headers=admin).json()] == ["adm", "dr.jensen"]
    assert client.delete("/api/users/dr.jensen", headers=admin).status_code == 204
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.delete("/api/users/nobody", headers=admin).status_code == 404
    assert [row[3] for row in audit_rows(any_database, "user.created")][-1] == "dr.jensen (radiologist)"


def test_metrics_count_states_deliveries_latency_and_scores(client, ids):
    text = client.get("/metrics").text
    assert 'triage_study_versions{pipeline="fracture",state="REPORTED"} 3.0' in text
    assert 'triage_study_versions{pipeline="breast",state="NOT_ANALYSED"} 1.0' in text
    assert 'triage_deliveries{state="FAILED"} 1.0' in text
    assert (
        'triage_screening_scores{score="10"} 1.0' in text and 'triage_screening_scores{score="3"} 1.0' in text
    )
    assert 'triage_screening_scores{score="7"} 0.0' in text
    # seeded REPORTED versions: completed 1 s after the first instance, reported 4 s later
    assert 'triage_completion_to_report_seconds_bucket{le="5.0",pipeline="fracture"} 3.0' in text
    assert 'triage_completion_to_report_seconds_bucket{le="3.0",pipeline="fracture"} 0.0' in text
    assert 'triage_queue_depth{queue="analysis"} 0.0' in text
    assert "SYN000" not in text and "Phantom" not in text
    assert 'triage_verdicts{pipeline="fracture",verdict="NO_FRACTURE"} 1.0' in text
    # the seeded outcomes carry no gate: every decision counts as supported by the evidence
    assert 'triage_decision_enabled{basis="evidence",decision="rule_out",pipeline="fracture"} 1.0' in text


def test_metrics_show_the_evidence_gate_of_the_latest_result(client, any_database, settings):
    from triage import evidence
    from triage.evidence import Gate
    from triage.outcomes import Decision

    seed.worklist_of_every_kind(any_database, settings)
    intact = seed.trauma(21, fractured=False)
    gate = Gate(not_enabled={Decision.RULE_OUT: "no evidence"}, overridden={Decision.BOXES: "by admin"})
    outcome = evidence.apply(seed.fracture_outcome("NO_FRACTURE", 0.05, {}), gate)
    seed.add_study(
        any_database, settings, intact, pipeline="fracture", state=seed.StudyState.ANALYSED, outcome=outcome
    )
    text = client.get("/metrics").text
    assert 'triage_verdicts{pipeline="fracture",verdict="NORMAL_READING"} 1.0' in text
    assert 'triage_decision_enabled{basis="none",decision="rule_out",pipeline="fracture"} 0.0' in text
    assert 'triage_decision_enabled{basis="override",decision="boxes",pipeline="fracture"} 1.0' in text


def test_readiness_reports_database_queue_and_pacs(client, settings):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] is True and ready.json()["queue"] is True
    assert ready.json()["pacs"] == "not configured"


def test_queries_are_not_logged(client, radiologist, ids, caplog):
    with caplog.at_level(logging.INFO):
        queue(client, radiologist, "all", search="Phantom^Patient3")
    ours = [r.getMessage() for r in caplog.records if r.name != "httpx"]  # httpx is the test's client
    assert any("/api/worklist" in message for message in ours)
    assert not any("Phantom" in message for message in ours)


def test_loose_values_are_refused_rather_than_guessed(client, radiologist, ids):
    zero = client.post(
        f"/api/studies/{ids['doubt']}/feedback", json={"kind": "FRACTURE", "value": 0}, headers=radiologist
    )
    assert zero.status_code == 422  # 0 is not "no fracture"
    unix = client.get("/api/worklist", params={"received_to": "0.5"}, headers=radiologist)
    assert unix.status_code == 422 and "RFC 3339" in unix.text
    naive = client.get("/api/worklist", params={"received_to": "2026-11-20T08:00:00"}, headers=radiologist)
    assert naive.status_code == 422  # a time without its offset is ambiguous


def test_an_admin_resolves_a_conflicting_duplicate_and_it_is_audited(client, any_database, radiologist, ids):
    from triage.records.tables import Study

    with any_database.session() as session:
        session.get(Study, ids["doubt"]).conflict = True
    admin = signed_in(client, any_database, "adm", Role.ADMIN)
    path = f"/api/studies/{ids['doubt']}/conflict/resolve"
    body = {"reason": "quarantined copy compared with the PACS: a re-send with new pixel padding"}
    assert client.post(path, json=body, headers=radiologist).status_code == 403
    assert queue(client, radiologist, "trauma")["items"][1]["conflict"] is True
    resolved = client.post(path, json=body, headers=admin)
    assert resolved.status_code == 200 and resolved.json() == {"study_id": ids["doubt"], "conflict": False}
    assert client.post(path, json=body, headers=admin).status_code == 409
    assert client.post("/api/studies/999999/conflict/resolve", json=body, headers=admin).status_code == 404
    assert audit_rows(any_database, "conflict.resolved") == [
        ("local:adm", ids["doubt"], "testclient", body["reason"])
    ]


def test_an_admin_retracts_a_verdict_and_the_study_goes_conservative(client, any_database, radiologist, ids):
    from triage.messages import WITHDRAW_RESULT
    from triage.records.tables import Delivery, DeliveryState, OutboxMessage, StudyState, StudyVersion

    admin = signed_in(client, any_database, "adm", Role.ADMIN)
    body = {"reason": "model 0.1.0 found to miss scaphoid fractures"}
    path = f"/api/studies/{ids['no_fracture']}/result/retract"
    assert client.post(path, json=body, headers=radiologist).status_code == 403
    assert client.post(path, json={"reason": ""}, headers=admin).status_code == 422
    retracted = client.post(path, json=body, headers=admin)
    assert retracted.status_code == 200, retracted.text
    assert retracted.json() == {"study_id": ids["no_fracture"], "version": 1, "superseded_at_pacs": True}
    assert client.post(path, json=body, headers=admin).status_code == 409, "nothing acts any more"
    assert client.post("/api/studies/999999/result/retract", json=body, headers=admin).status_code == 404
    pending = client.post(f"/api/studies/{ids['high_risk']}/result/retract", json=body, headers=admin)
    assert pending.json()["superseded_at_pacs"] is False, "the PACS had nothing of it yet"
    with any_database.session() as session:
        versions = {
            v.study_id: v for v in session.scalars(select(StudyVersion)) if v.study_id in ids.values()
        }
        tasks = [m.payload for m in session.scalars(select(OutboxMessage)) if m.task_name == WITHDRAW_RESULT]
        not_sent = [
            d for d in session.scalars(select(Delivery)) if d.version_id == versions[ids["high_risk"]].id
        ]
    for name in ("no_fracture", "high_risk"):
        assert versions[ids[name]].state == StudyState.NOT_ANALYSED
        assert versions[ids[name]].reason == f"result withdrawn: retracted by local:adm: {body['reason']}"
    assert tasks == [
        {
            "study_version_id": versions[ids["no_fracture"]].id,
            "reason": versions[ids["no_fracture"]].reason[len("result withdrawn: ") :],
        }
    ]
    assert [d.state for d in not_sent] == [DeliveryState.FAILED] and "withdrawn" in not_sent[0].last_error
    items = {item["study_id"]: item for item in queue(client, radiologist, "not_analysed")["items"]}
    assert ids["no_fracture"] in items and ids["high_risk"] in items
    assert [row[:3] for row in audit_rows(any_database, "result.withdrawn")] == [
        ("local:adm", ids["no_fracture"], "testclient"),
        ("local:adm", ids["high_risk"], "testclient"),
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/users"),
        ("POST", "/api/studies/1/feedback"),
        ("POST", "/api/studies/1/conflict/resolve"),
        ("POST", "/api/studies/1/result/retract"),
    ],
)
def test_a_stranger_learns_nothing_from_a_malformed_body(any_database, settings, method, path):
    """401 is decided before the body is read: invalid JSON from a stranger is not a 422."""
    with TestClient(create_app(any_database, settings)) as client:
        response = client.request(
            method,
            path,
            content=b"\x00",
            headers={"Authorization": "Bearer ", "Content-Type": "application/json"},
        )
    assert response.status_code == 401, response.text


def test_cross_site_and_non_json_unsafe_requests_are_refused_and_the_csp_is_tight(client, radiologist, ids):
    path = f"/api/studies/{ids['doubt']}/feedback"
    body = {"kind": "FRACTURE", "value": True}
    cross = client.post(path, json=body, headers={**radiologist, "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    other = client.post(path, json=body, headers={**radiologist, "Origin": "https://evil.example"})
    assert other.status_code == 403
    form = client.post(path, content=b"kind=FRACTURE", headers={**radiologist, "Content-Type": "text/plain"})
    assert form.status_code == 415
    same = client.post(path, json=body, headers={**radiologist, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 201
    csp = client.get("/").headers["Content-Security-Policy"]
    assert "base-uri 'none'" in csp and "form-action 'self'" in csp and "object-src 'none'" in csp
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 200


def test_the_settings_an_admin_sees_hold_no_credential(database, make_settings):
    settings = make_settings(
        database_url="sqlite:///unused-secret-path.db",
        mlflow_tracking_uri="https://ml-user:ml-pass@mlflow.example/",
    )
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(database, settings)) as client:
        admin = signed_in(client, database, "adm", Role.ADMIN)
        response = client.get("/api/settings", headers=admin)
        assert (
            client.get(
                "/api/settings", headers=signed_in(client, database, "rad", Role.RADIOLOGIST)
            ).status_code
            == 403
        )
    assert response.status_code == 200, response.text
    assert "ml-pass" not in response.text and "ml-user" not in response.text
    assert "unused-secret-path" not in response.text
    assert response.json()["mlflow_tracking_uri"] == "https://**********@mlflow.example/"


def test_a_study_opens_in_the_sites_pacs_viewer_audited(any_database, make_settings, ids):
    from triage.records.tables import Study
    from worklist.app import create_app

    template = "https://pacs.example/viewer?StudyInstanceUID={study_instance_uid}"
    settings = make_settings(pacs_viewer_url=template)
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(any_database, settings)) as viewer_client:
        headers = signed_in(viewer_client, any_database, "rad", Role.RADIOLOGIST)
        assert queue(viewer_client, headers, "trauma")["pacs_viewer"] is True
        launched = viewer_client.post(f"/api/studies/{ids['fracture']}/viewer", headers=headers)
        assert launched.status_code == 200, launched.text
        with any_database.reading() as session:
            uid = session.get(Study, ids["fracture"]).study_instance_uid
        assert launched.json()["url"] == template.format(study_instance_uid=uid)
        assert viewer_client.post("/api/studies/999999/viewer", headers=headers).status_code == 404
        found = viewer_client.get(f"/api/studies/by-uid/{uid}", headers=headers)
        assert found.json() == {"study_id": ids["fracture"]}
        assert viewer_client.get("/api/studies/by-uid/1.2.3", headers=headers).status_code == 404
        assert viewer_client.get("/api/studies/by-uid/not-a-uid", headers=headers).status_code == 422
    [(actor, study_id, _, detail)] = audit_rows(any_database, "viewer.launched")
    assert (actor, study_id, detail) == ("local:rad", ids["fracture"], "opened in the PACS viewer")


def test_without_a_viewer_configured_there_is_nothing_to_open(client, radiologist, ids):
    assert queue(client, radiologist, "trauma")["pacs_viewer"] is False
    refused = client.post(f"/api/studies/{ids['fracture']}/viewer", headers=radiologist)
    assert refused.status_code == 404 and "pacs_viewer_url" in refused.json()["detail"]


def test_the_ihe_invoke_image_display_entry_point_hands_the_study_to_the_page(client):
    sent = client.get(
        "/IHEInvokeImageDisplay",
        params={"requestType": "STUDY", "studyUID": "1.2.840.1"},
        follow_redirects=False,
    )
    assert sent.status_code == 303 and sent.headers["location"] == "/#study-uid=1.2.840.1"
    for params in ({"requestType": "PATIENT", "studyUID": "1.2"}, {"requestType": "STUDY"},
                   {"requestType": "STUDY", "studyUID": "1.2'><script>"}):  # fmt: skip
        refused = client.get("/IHEInvokeImageDisplay", params=params, follow_redirects=False)
        assert refused.status_code == 400 and "requestType=STUDY" in refused.json()["detail"]


def failed_items(database, study_id):
    """On the study's version: a failed rejection note, a failed SR and a failed HL7 message."""
    from triage.records.tables import Delivery, Hl7Message, StateChange, StudyVersion

    with database.session() as session:
        version = session.scalars(select(StudyVersion).where(StudyVersion.study_id == study_id)).one()
        change = session.scalars(select(StateChange).where(StateChange.version_id == version.id)).first()
        made = [
            Delivery(
                version_id=version.id,
                kind=kind,
                sop_instance_uid=f"2.25.{version.id}9{n}",
                storage_key="k",
                state="FAILED",
                attempts=10,
                last_error="association rejected",
            )
            for n, kind in enumerate(("kos", "sr"))
        ]
        made.append(
            Hl7Message(
                version_id=version.id,
                study_id=study_id,
                state_change_id=change.id,
                control_id="TRIAGE-T1",
                result_status="P",
                message="MSH|",
                state="FAILED",
                attempts=10,
                last_error="AE: busy",
            )
        )
        session.add_all(made)
        session.flush()
        return [item.id for item in made]


def test_an_admin_lists_what_failed_and_sends_again_what_may_go_again(client, any_database, radiologist, ids):
    from triage.records.tables import Hl7Message

    kos, sr, message = failed_items(any_database, ids["fracture"])
    admin = signed_in(client, any_database, "adm", Role.ADMIN)
    assert client.get("/api/outbound", headers=radiologist).status_code == 403
    listed = client.get("/api/outbound", params={"state": "FAILED"}, headers=admin).json()
    found = {(item["destination"], item["id"]): item for item in listed}
    assert {("pacs", kos), ("pacs", sr), ("ris", message)} <= set(found)
    assert found[("ris", message)]["identifier"] == "TRIAGE-T1" and found[("ris", message)]["kind"] == "oru"
    assert all(item["state"] == "FAILED" for item in listed)
    body = {"reason": "the PACS was down for maintenance"}
    again = client.post(f"/api/outbound/pacs/{kos}/resend", json=body, headers=admin)
    assert again.status_code == 200 and again.json()["state"] == "PENDING" and again.json()["attempts"] == 0
    assert client.post(f"/api/outbound/pacs/{kos}/resend", json=body, headers=admin).status_code == 409
    refused = client.post(f"/api/outbound/pacs/{sr}/resend", json=body, headers=admin)
    assert refused.status_code == 409 and "withdrew its verdict" in refused.json()["detail"]
    assert client.post(f"/api/outbound/ris/{message}/resend", json=body, headers=admin).status_code == 200
    assert client.post("/api/outbound/ris/999999/resend", json=body, headers=admin).status_code == 404
    with any_database.session() as session:  # one that could not even be built has nothing to send
        unbuilt = session.get_one(Hl7Message, message)
        unbuilt.state, unbuilt.message, unbuilt.last_error = (
            "FAILED",
            "",
            "could not be built (MaxLengthReached)",
        )
    refused = client.post(f"/api/outbound/ris/{message}/resend", json=body, headers=admin)
    assert refused.status_code == 409 and "never built" in refused.json()["detail"]
    assert (
        client.post(f"/api/outbound/ris/{message}/resend", json={"reason": ""}, headers=admin).status_code
        == 422
    )
    assert (
        client.post(f"/api/outbound/ris/{message}/resend", json=body, headers=radiologist).status_code == 403
    )
    resent = audit_rows(any_database, "delivery.resent")
    assert [row[:3] for row in resent] == [("local:adm", ids["fracture"], "testclient")] * 2
