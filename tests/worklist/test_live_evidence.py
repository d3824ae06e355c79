"""The live evidence and the switch it throws: synthetic trauma studies and screens with results,
radiologists' readings as outcomes, on SQLite and on the real PostgreSQL. A rule-out whose live
sensitivity falls below its card's claim, or that clears fractured patients, switches itself off;
the next result takes the conservative path and says why; only an admin resumes it."""

from datetime import timedelta

from testkit.synthetic import synthetic_evidence
from tests.worklist import seed
from tests.worklist.test_api import signed_in
from triage.cards import parse_card
from triage.evidence import DEFAULT_BARS, Gatekeeper
from triage.outcomes import Decision, FractureOutcome, Verdict
from triage.pipelines import Pipeline
from triage.records import live_evidence, readings, switches
from triage.records.tables import FeedbackKind, Role, StudyState

CLAIM = 0.99
T0 = seed.T0
WINDOW = dict(pipeline="fracture", state=StudyState.REPORTED, at=T0)


def fracture_result(state: str, rule_out_enabled: bool = True) -> FractureOutcome:
    """A result as the pipeline freezes it: the card's claim, and the rule-out on or off."""
    outcome = seed.fracture_outcome(state, {"FRACTURE": 0.8, "DOUBT": 0.4, "NO_FRACTURE": 0.1}[state], {})
    off = {} if rule_out_enabled else {Decision.RULE_OUT: "no evidence (synthetic)"}
    return outcome.model_copy(update={"claims": {Decision.RULE_OUT: CLAIM}, "not_enabled": off})


def fractured_study(database, settings, n: int, outcome: FractureOutcome, read_at=T0) -> int:
    """A study with ``outcome`` that a radiologist then read as fractured."""
    study_id = seed.add_study(database, settings, seed.trauma(n, True), outcome=outcome, **WINDOW)
    with database.session() as session:
        readings.add_feedback(
            session, study_id=study_id, kind=FeedbackKind.FRACTURE, value=True, boxes=[], comment="",
            author="rad", now=read_at,
        )  # fmt: skip
    return study_id


def check(database, settings, now):
    with database.session() as session:
        return live_evidence.check(session, settings, now)


def off(database, pipeline=Pipeline.FRACTURE):
    with database.reading() as session:
        return switches.switched_off(session, pipeline)


def test_the_live_sensitivity_switches_the_rule_out_off_once_its_upper_bound_is_below_the_claim(
    any_database, settings
):
    now = T0 + timedelta(days=1)
    for n in range(20):
        fractured_study(any_database, settings, n, fracture_result("DOUBT" if n % 2 else "FRACTURE"))
    # a fracture below DOUBT while the rule-out was off: a miss, but nobody was cleared
    fractured_study(any_database, settings, 20, fracture_result("NO_FRACTURE", rule_out_enabled=False))
    assert check(any_database, settings, now) == [], "20 of 21: upper bound 0.992, not below 0.99"
    with any_database.reading() as session:
        live = live_evidence.figure(session, Decision.RULE_OUT, settings, now)
    assert (live.positives, live.hits, live.discordances, live.claim) == (21, 20, 0, CLAIM)
    assert live.ci95_high > CLAIM

    fractured_study(any_database, settings, 21, fracture_result("NO_FRACTURE", rule_out_enabled=False))
    assert check(any_database, settings, now) == [Decision.RULE_OUT]
    [why] = off(any_database).values()
    assert "live sensitivity at DOUBT 20/22" in why and "below the card's claim 0.990" in why
    assert check(any_database, settings, now) == [], "already off: not switched again"


def test_few_outcomes_cannot_trip_the_test_but_cleared_fractures_do(any_database, settings):
    now = T0 + timedelta(days=1)
    fractured_study(any_database, settings, 1, fracture_result("NO_FRACTURE", rule_out_enabled=False))
    fractured_study(any_database, settings, 2, fracture_result("NO_FRACTURE", rule_out_enabled=False))
    assert check(any_database, settings, now) == [], "0 of 2 is below the minimum count of 20"
    fractured_study(any_database, settings, 3, fracture_result("NO_FRACTURE"))
    assert check(any_database, settings, now) == [], "one patient cleared with a fracture: under 2"
    fractured_study(any_database, settings, 4, fracture_result("NO_FRACTURE"))
    assert check(any_database, settings, now) == [Decision.RULE_OUT]
    assert (
        "2 fractures on studies cleared as NO FRACTURE within 30 days" in off(any_database)[Decision.RULE_OUT]
    )

    later = now + timedelta(days=60)
    with any_database.session() as session:
        assert switches.change(
            session, Pipeline.FRACTURE, Decision.RULE_OUT, False, "reviewed", "admin", later
        )
        assert not switches.change(
            session, Pipeline.FRACTURE, Decision.RULE_OUT, False, "again", "admin", later
        )
    assert off(any_database) == {}
    assert check(any_database, settings, later) == [], "judged afresh from the resumption"
    with any_database.reading() as session:
        assert live_evidence.figure(session, Decision.RULE_OUT, settings, later).positives == 0


def test_a_switched_off_decision_is_off_whatever_the_card_or_an_override_says(any_database, settings):
    card = parse_card({
        "name": "f", "version": "1", "pipeline": "fracture", "architecture": "fracture-lite0",
        "input_size": 64, "intended_use": "tests", "data": [], "preprocessing": "-", "held_out": "-",
        "metrics": {}, "weights_sha256": "0" * 64, "reproduce": "-", "created": "-",
        "fracture_threshold": 0.6, "doubt_threshold": 0.2, "evidence": synthetic_evidence(0.2),
    })  # fmt: skip
    with any_database.session() as session:
        switches.change(
            session, Pipeline.FRACTURE, Decision.RULE_OUT, True, "checking a detector", "admin", T0
        )

    def read(pipeline):
        with any_database.reading() as session:
            return switches.switched_off(session, pipeline)

    override = {Decision.RULE_OUT: "enabled by admin"}
    gate = Gatekeeper(DEFAULT_BARS, lambda name, version: override, read)(card)
    assert gate.not_enabled[Decision.RULE_OUT].startswith("switched off: checking a detector (admin, ")
    assert Decision.RULE_OUT not in gate.overridden and gate.claims == {Decision.RULE_OUT: 1.0}
    cleared = seed.fracture_outcome("NO_FRACTURE", 0.1, {})
    from triage import evidence

    frozen = evidence.apply(cleared, gate)
    assert frozen.verdict is Verdict.NORMAL_READING and not frozen.eligible_for_discharge
    assert frozen.claims == {Decision.RULE_OUT: 1.0}, "the claim is frozen with the result"


def test_cancers_single_read_switch_single_reading_off(any_database, settings):
    now = T0 + timedelta(days=1)
    claims = {Decision.SINGLE_READ: 0.05}
    for n in range(2):  # two cancers on screens sent to one reader
        outcome = seed.breast_outcome(3).model_copy(update={"claims": claims})
        study_id = seed.add_study(
            any_database,
            settings,
            seed.screen(n),
            pipeline="breast",
            state=StudyState.REPORTED,
            outcome=outcome,
        )
        with any_database.session() as session:
            readings.add_feedback(
                session, study_id=study_id, kind=FeedbackKind.CANCER, value=True, boxes=[], comment="",
                author="rad", now=T0,
            )  # fmt: skip
    assert check(any_database, settings, now) == [Decision.SINGLE_READ]
    assert (
        "2 cancers on screens sent to single reading"
        in off(any_database, Pipeline.BREAST)[Decision.SINGLE_READ]
    )


def test_readings_on_the_page_throw_the_switch_and_only_an_admin_resumes_it(client, any_database, settings):
    radiologist = signed_in(client, any_database, "rad", Role.RADIOLOGIST)
    admin = signed_in(client, any_database, "boss", Role.ADMIN)
    for n in (1, 2):
        study_id = seed.add_study(
            any_database, settings, seed.trauma(n, True), outcome=fracture_result("NO_FRACTURE"), **WINDOW
        )
        reading = {"kind": "FRACTURE", "value": True, "boxes": [], "comment": ""}
        response = client.post(f"/api/studies/{study_id}/feedback", json=reading, headers=radiologist)
        assert response.status_code == 201, response.text
    [rule_out] = [
        d for d in client.get("/api/decisions", headers=admin).json() if d["decision"] == "rule_out"
    ]
    assert rule_out["switched_off"] and rule_out["actor"] == switches.LIVE_EVIDENCE
    assert rule_out["discordances"] == 2 and rule_out["positives"] == 2 and rule_out["claim"] == CLAIM
    assert (
        'triage_decision_switched_off{decision="rule_out",pipeline="fracture"} 1.0'
        in client.get("/metrics").text
    )

    reason = {"reason": "the two misses were reviewed"}
    assert client.get("/api/decisions", headers=radiologist).status_code == 403
    assert (
        client.post("/api/decisions/fracture/rule_out/resume", json=reason, headers=radiologist).status_code
        == 403
    )
    resumed = client.post("/api/decisions/fracture/rule_out/resume", json=reason, headers=admin)
    assert resumed.status_code == 200 and not resumed.json()["switched_off"]
    assert (
        client.post("/api/decisions/fracture/rule_out/resume", json=reason, headers=admin).status_code == 409
    )
    assert client.post("/api/decisions/fracture/boxes/off", json=reason, headers=admin).status_code == 422
    audited = seed_audit(any_database)
    assert ("model.decision_switched_off", switches.LIVE_EVIDENCE) in audited
    assert ("model.decision_resumed", "local:boss") in audited


def seed_audit(database):
    from sqlalchemy import select

    from triage.records.tables import AuditEvent

    with database.reading() as session:
        return set(session.execute(select(AuditEvent.action, AuditEvent.actor)).tuples())
