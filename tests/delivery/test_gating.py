"""A verdict that lets a reader do less waits for the PACS's acknowledgement; one that asks for more
attention acts at once; without a PACS a recorded result acts at once."""

import pytest

from triage.outcomes import BreastOutcome, FractureOutcome, Route, Verdict
from triage.records.tables import DeliveryState, StudyState
from triage.records.verdicts import acting_outcome, acting_verdict

CLEAR = FractureOutcome(state="NO_FRACTURE", probability=0.01)
URGENT = FractureOutcome(state="FRACTURE", probability=0.99)


def screen(score):
    route = Route.SINGLE_READ if score <= 5 else Route.DOUBLE_READ
    return BreastOutcome(
        score=score, route=route, probability=score / 10, single_read_max_score=5, high_risk=score >= 9
    )


@pytest.mark.parametrize("outcome", [CLEAR, screen(2)])
def test_a_permissive_verdict_is_pending_until_the_pacs_has_it(outcome):
    assert acting_verdict(StudyState.ANALYSED, outcome, reporting=True) == Verdict.PENDING
    assert acting_outcome(StudyState.ANALYSED, outcome, reporting=True) is None
    assert acting_verdict(StudyState.REPORTED, outcome, reporting=True) == outcome.verdict
    assert acting_verdict(StudyState.ANALYSED, outcome, reporting=False) == outcome.verdict
    assert acting_verdict(StudyState.NOT_ANALYSED, outcome, reporting=True) == Verdict.NOT_ANALYSED


@pytest.mark.parametrize("outcome", [URGENT, screen(9)])
def test_a_verdict_that_asks_for_attention_acts_at_once(outcome):
    assert acting_verdict(StudyState.ANALYSED, outcome, reporting=True) == outcome.verdict
    assert acting_outcome(StudyState.ANALYSED, outcome, reporting=True) is outcome


def test_the_wait_follows_the_versions_deliveries_not_the_api_processs_settings(settings, database):
    """The API here has no PACS configured; what decides is whether the version has result objects
    to deliver. Written into the version's row as the state, result and deliveries change."""
    from fastapi.testclient import TestClient
    from sqlalchemy import select

    from testkit import synthetic
    from tests.worklist import seed
    from tests.worklist.test_api import signed_in
    from triage.records import store
    from triage.records.tables import Role, StudyVersion
    from worklist.app import create_app

    assert settings.pacs is None
    outcome = seed.fracture_outcome("NO_FRACTURE", 0.02, {})
    with_objects = seed.add_study(
        database, settings, [synthetic.dx()], pipeline="fracture", state=StudyState.ANALYSED,
        outcome=outcome, deliveries=(DeliveryState.PENDING, DeliveryState.PENDING),
    )  # fmt: skip
    without = seed.add_study(
        database, settings, [synthetic.dx()], pipeline="fracture", state=StudyState.ANALYSED, outcome=outcome
    )
    (settings.queue_dir / "messages").mkdir(parents=True, exist_ok=True)
    with TestClient(create_app(database, settings)) as client:
        headers = signed_in(client, database, "rad", Role.RADIOLOGIST)

        def verdict(study_id):
            return client.get(f"/api/studies/{study_id}", headers=headers).json()["item"]["verdict"]

        assert verdict(with_objects) == Verdict.PENDING, "not acting before the PACS has the objects"
        assert verdict(without) == Verdict.NO_FRACTURE, "nothing to deliver: it acts at once"
        over_read = client.get("/api/worklist?queue=over_read", headers=headers).json()["items"]
        assert [item["study_id"] for item in over_read] == [without]
        with database.session() as session:
            version = session.scalars(select(StudyVersion).where(StudyVersion.study_id == with_objects)).one()
            assert store.transition(session, version.id, StudyState.ANALYSED, StudyState.REPORTED, seed.T0)
        assert verdict(with_objects) == Verdict.NO_FRACTURE
