"""A verdict that lets a reader do less waits for the PACS's acknowledgement; one that asks for more
attention acts at once; without a PACS a recorded result acts at once."""

import pytest

from triage.outcomes import BreastOutcome, FractureOutcome, Route, Verdict
from triage.records.tables import StudyState
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
