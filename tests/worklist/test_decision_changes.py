"""Enabling a decision, or moving the single-reading threshold, takes two admins and shows a what-if
on the site's own recent studies first; it acts from its stated time, and each result names the
threshold it used. SQLite and the real PostgreSQL; synthetic studies and readings."""

from datetime import timedelta

from sqlalchemy import select

from tests.worklist import seed
from tests.worklist.test_api import audit_rows, signed_in
from triage.outcomes import Decision
from triage.records import decision_changes, overrides, readings
from triage.records.db import utcnow
from triage.records.tables import FeedbackKind, Role, StudyState, StudyVersion

NOW = seed.T0 + timedelta(days=1)
MODEL = ("triage-fracture-phantom", "0.1.0")  # what tests.worklist.seed names its results' model


def study(database, settings, n, outcome, pipeline="fracture"):
    datasets = seed.trauma(n, True) if pipeline == "fracture" else seed.screen(n)
    return seed.add_study(
        database, settings, datasets, pipeline=pipeline, state=StudyState.REPORTED, outcome=outcome
    )


def reading(database, study_id, kind):
    with database.session() as session:
        readings.add_feedback(
            session, study_id=study_id, kind=kind, value=True, boxes=[], comment="", author="rad", now=seed.T0
        )


def test_the_what_if_counts_the_sites_own_studies_with_their_outcomes(any_database, settings):
    missed = study(any_database, settings, 1, seed.fracture_outcome("NO_FRACTURE", 0.1, {}))
    study(any_database, settings, 2, seed.fracture_outcome("NO_FRACTURE", 0.1, {}))
    box = ((10, 10, 40, 40), 0.7)
    caught = study(any_database, settings, 3, seed.fracture_outcome("DOUBT", 0.4, {"1.2.3.4": [box]}))
    study(any_database, settings, 4, seed.fracture_outcome("FRACTURE", 0.9, {}))
    reading(any_database, missed, FeedbackKind.FRACTURE)
    reading(any_database, caught, FeedbackKind.FRACTURE)
    for n, score in enumerate((2, 4, 6, 7, 9), start=10):
        screen = study(
            any_database, settings, n, seed.breast_outcome(score, single_read_max_score=0), "breast"
        )
        if score in (6, 9):
            reading(any_database, screen, FeedbackKind.CANCER)
    with any_database.reading() as session:
        rule_out = decision_changes.what_if(session, "fracture", Decision.RULE_OUT, None, settings, NOW)
        at_five = decision_changes.what_if(session, "breast", Decision.SINGLE_READ, 5, settings, NOW)
        at_seven = decision_changes.what_if(session, "breast", Decision.SINGLE_READ, 7, settings, NOW)
        boxes = decision_changes.what_if(session, "fracture", Decision.BOXES, None, settings, NOW)
    assert rule_out["studies"] == 4 and rule_out["share_cleared"]["value"] == 0.5
    assert rule_out["reads_saved_per_1000"] == 500
    assert rule_out["fractures_cleared"]["value"] == 0.5 and rule_out["fractures_cleared"]["n"] == 2
    assert at_five["share_single_read"]["value"] == 0.4 and at_five["cancers_single_read"]["value"] == 0.0
    assert at_seven["share_single_read"]["value"] == 0.8 and at_seven["reads_saved_per_1000"] == 800
    assert at_seven["cancers_single_read"]["value"] == 0.5, "the cancer scored 6 goes to one reader at 7"
    assert boxes["studies"] == 4 and boxes["share_with_boxes"]["value"] == 0.25
    assert boxes["fractures_with_boxes"]["value"] == 0.5 and boxes["fractures_with_boxes"]["n"] == 2
    low, high = at_seven["cancers_single_read"]["ci95_low"], at_seven["cancers_single_read"]["ci95_high"]
    assert 0 < low < 0.5 < high < 1, "two cancers: a wide interval, shown as such"


def test_two_admins_move_the_threshold_and_it_acts_from_its_stated_time(any_database, settings, client):
    first = signed_in(client, any_database, "first", Role.ADMIN)
    second = signed_in(client, any_database, "second", Role.ADMIN, Role.RADIOLOGIST)
    later = (utcnow() + timedelta(days=7)).isoformat()
    reason = "as the Capital Region did, after a year of audit"
    proposal = {"pipeline": "breast", "decision": "single_read", "single_read_max_score": 7,
                "effective_at": later, "reason": reason}  # fmt: skip
    answer = client.post("/api/decisions/changes", json=proposal, headers=first)
    assert answer.status_code == 201, answer.text
    change = answer.json()
    assert change["what_if"]["single_read_max_score"] == 7 and change["approved_at"] is None
    assert client.get("/api/worklist", headers=second).json()["single_read_max_score"] == 5, "not yet"
    url = f"/api/decisions/changes/{change['id']}/approve"
    refused = client.post(url, headers=first)
    assert refused.status_code == 409 and "a second admin" in refused.text
    assert client.post(url, headers=second).status_code == 200
    assert client.post(url, headers=second).status_code == 409, "approved once"
    with any_database.reading() as session:
        assert decision_changes.single_read_threshold(session, 5, utcnow()) == 5, "from its stated time"
        assert decision_changes.single_read_threshold(session, 5, utcnow() + timedelta(days=8)) == 7

    now = {**proposal, "single_read_max_score": 6, "effective_at": utcnow().isoformat()}
    second_change = client.post("/api/decisions/changes", json=now, headers=second).json()
    client.post(f"/api/decisions/changes/{second_change['id']}/approve", headers=first)
    assert client.get("/api/worklist", headers=second).json()["single_read_max_score"] == 6
    assert [a[0] for a in audit_rows(any_database, "model.decision_change_approved")] == [
        "local:second",
        "local:first",
    ]
    bad = client.post("/api/decisions/changes", json={**proposal, "decision": "rule_out"}, headers=first)
    assert bad.status_code == 422 and "not a decision of the breast pipeline" in bad.text


def test_a_rule_out_enabled_by_two_admins_is_an_override_from_its_time(any_database, settings):
    when = NOW + timedelta(hours=2)
    with any_database.session() as session:
        change = decision_changes.propose(
            session, pipeline="fracture", decision=Decision.RULE_OUT, model=MODEL,
            single_read_max_score=None, effective_at=when, reason="local evidence on 400 fractures",
            actor="local:first", settings=settings, now=NOW, source="admin",
        )  # fmt: skip
        decision_changes.approve(session, change.id, "local:second", NOW, "admin")
    with any_database.reading() as session:
        assert overrides.in_force(session, *MODEL, NOW) == {}
        [why] = overrides.in_force(session, *MODEL, when).values()
    assert "proposed by local:first, approved by local:second" in why


def test_live_performance_from_the_outcomes_so_far(any_database, settings, client):
    cleared = study(any_database, settings, 1, seed.fracture_outcome("NO_FRACTURE", 0.1, {}))
    flagged = study(any_database, settings, 2, seed.fracture_outcome("DOUBT", 0.4, {}))
    for study_id in (cleared, flagged):
        with any_database.session() as session:
            readings.add_feedback(
                session, study_id=study_id, kind=FeedbackKind.FRACTURE, value=False, boxes=[], comment="",
                author="rad", now=utcnow(),
            )  # fmt: skip
    single = study(any_database, settings, 10, seed.breast_outcome(3), "breast")
    study(any_database, settings, 11, seed.breast_outcome(8), "breast")
    reading(any_database, single, FeedbackKind.CANCER)
    seed.add_study(
        any_database, settings, seed.trauma(20, False), pipeline="fracture", state=StudyState.NOT_ANALYSED,
        reason="modality CT is outside the model's intended use; normal reading",
    )  # fmt: skip
    with any_database.session() as session:  # completion to SR, as the REPORTED transitions store it
        versions = session.scalars(
            select(StudyVersion).where(StudyVersion.pipeline == "fracture").order_by(StudyVersion.id)
        ).all()
        for version, seconds in zip(versions, (2.0, 9.0), strict=False):
            version.reported_seconds = seconds
    admin = signed_in(client, any_database, "boss", Role.ADMIN)
    found = client.get("/api/decisions/performance", headers=admin)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["rule_out_specificity"]["value"] == 0.5 and body["rule_out_specificity"]["n"] == 2
    [month] = body["screening_by_month"]
    assert month["screens"] == 2 and month["share_at_or_below_threshold"]["value"] == 0.5
    assert month["cancers_per_1000"] == {"single": 1000.0, "double": 0.0}
    assert month["cancers_in_single_read_arm"]["value"] == 1.0
    not_analysed = body["not_analysed"]["fracture"]
    assert not_analysed["rate"]["value"] == round(1 / 3, 4)
    assert not_analysed["by_reason"] == {"modality CT is outside the model's intended use": 1}
    assert body["completion_to_report"]["fracture"] == {"p50_seconds": 2.0, "p95_seconds": 9.0, "n": 2}
    assert body["completion_to_report"]["breast"] == {"p50_seconds": 4.0, "p95_seconds": 4.0, "n": 2}


def test_at_the_command_line_too_one_admin_proposes_and_another_approves(settings, database):
    """Enabling a decision against the evidence is never one person's act, in the shell as on the page;
    ending it moves to the conservative side and takes one."""
    from typer.testing import CliRunner

    from testkit.peers import triage_env
    from triage.cli import app

    runner = CliRunner()

    def triage(user, *args):
        return runner.invoke(app, list(args), env={**triage_env(settings), "LOGNAME": user})

    model = "triage-breast-demo:1.0.0"
    refused = triage("ann", "decisions", "propose", "breast", "single_read", "--reason", "pilot")
    assert refused.exit_code == 2 and "single reading takes a threshold" in refused.output
    proposed = triage(
        "ann", "decisions", "propose", "breast", "single_read", "--model", model, "--threshold", "4",
        "--reason", "regional pilot, audited monthly", "--effective-at", "2026-01-01T00:00:00",
    )  # fmt: skip
    assert proposed.exit_code == 0, proposed.output
    assert "change 1 proposed: single reading enabled for triage-breast-demo 1.0.0" in proposed.output
    assert '"share_single_read"' in proposed.output and "triage decisions approve 1" in proposed.output
    with database.reading() as session:
        assert overrides.in_force(session, "triage-breast-demo", "1.0.0") == {}, "not before approval"
    same = triage("ann", "decisions", "approve", "1")
    assert same.exit_code == 1 and "a second admin must approve" in same.output
    approved = triage("bo", "decisions", "approve", "1")
    assert approved.exit_code == 0 and "change 1 approved" in approved.output
    assert "approved by cli:bo" in triage("bo", "decisions", "changes").output
    with database.reading() as session:
        [why] = overrides.in_force(session, "triage-breast-demo", "1.0.0").values()
        assert decision_changes.single_read_threshold(session, 5, utcnow()) == 4
    assert "proposed by cli:ann, approved by cli:bo" in why
    ended = triage("ann", "decisions", "end-override", "triage-breast-demo", "1.0.0", "single_read",
                   "--reason", "pilot over")  # fmt: skip
    assert ended.exit_code == 0, ended.output
    assert triage("ann", "decisions", "end-override", "triage-breast-demo", "1.0.0", "single_read",
                  "--reason", "again").exit_code == 1  # fmt: skip
    with database.reading() as session:
        assert overrides.in_force(session, "triage-breast-demo", "1.0.0") == {}
    said = audit_rows(database, "model.decision_override_revoked")
    assert said[0][0] == "cli:ann" and said[0][3].endswith(": pilot over")
    no_model = triage("ann", "decisions", "propose", "fracture", "boxes", "--reason", "local audit")
    assert no_model.exit_code == 2 and "names the model version" in no_model.output
