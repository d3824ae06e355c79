"""The verdict that acts: what the worklist shows of a study version, computed here and nowhere else.

It depends on the version's state and on its result's outcome: a result whose delivery failed (the
version went NOT_ANALYSED) never shows as NO FRACTURE. When results go to a PACS, a verdict that lets
a reader do less (NO FRACTURE: eligible for discharge; SINGLE READ) acts only once the PACS has
acknowledged the results (REPORTED): before that the study is PENDING ("AI pending: read as usual"),
so no patient is cleared and no screen single-read on a result no reader can see. A verdict that asks
for more attention (FRACTURE, DOUBT, DOUBLE READ, high risk) acts at once: holding it back would only
delay the urgent. Without any destination (the version has no result object to deliver), a recorded
result acts at once.

``settle`` writes the verdict and its urgency into the version's row whenever its state, its result
or its deliveries change, so that the worklist filters, orders and limits its queues in SQL.
"""

from __future__ import annotations

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from triage.outcomes import BreastOutcome, FractureOutcome, Verdict
from triage.records.tables import Delivery, Result, StudyState, StudyVersion

# The verdicts on which a reader does less than usual: they wait for the PACS.
PERMISSIVE = frozenset({Verdict.NO_FRACTURE, Verdict.SINGLE_READ})


def _may_act(state: StudyState, outcome: FractureOutcome | BreastOutcome, reporting: bool) -> bool:
    if not outcome.analysed:
        return False
    if state == StudyState.REPORTED:
        return True
    return state == StudyState.ANALYSED and not (reporting and outcome.verdict in PERMISSIVE)


def acting_verdict(
    state: StudyState, outcome: FractureOutcome | BreastOutcome | None, reporting: bool
) -> Verdict:
    """The version's verdict: its outcome's once it may act, else why there is none. ``reporting``:
    results go to a PACS, whose acknowledgement a permissive verdict waits for."""
    if outcome is not None and _may_act(state, outcome, reporting):
        return outcome.verdict
    if state == StudyState.NOT_ANALYSED:
        return Verdict.NOT_ANALYSED
    if state in (StudyState.IGNORED, StudyState.SUPERSEDED):
        return Verdict.IGNORED
    return Verdict.PENDING


def acting_outcome(
    state: StudyState, outcome: FractureOutcome | BreastOutcome | None, reporting: bool
) -> FractureOutcome | BreastOutcome | None:
    """The outcome behind the acting verdict, when there is one (None: not to be acted on)."""
    return outcome if outcome is not None and _may_act(state, outcome, reporting) else None


URGENT, DOUBTFUL, ROUTINE = 0, 1, 2


def urgency(verdict: Verdict, acting: FractureOutcome | BreastOutcome | None) -> int:
    """How soon a reader should look: FRACTURE and high-risk screens first, then DOUBT."""
    if verdict == Verdict.FRACTURE or (isinstance(acting, BreastOutcome) and acting.high_risk):
        return URGENT
    return DOUBTFUL if verdict == Verdict.DOUBT else ROUTINE


def settle(session: Session, version_id: int) -> Verdict:
    """Write the version's acting verdict and urgency from its state, result and deliveries."""
    session.flush()
    state = session.scalar(select(StudyVersion.state).where(StudyVersion.id == version_id))
    if state is None:
        return Verdict.PENDING
    outcome = session.scalar(select(Result.outcome).where(Result.version_id == version_id))
    reporting = bool(session.scalar(select(exists().where(Delivery.version_id == version_id))))
    verdict = acting_verdict(StudyState(state), outcome, reporting)
    acting = acting_outcome(StudyState(state), outcome, reporting)
    session.execute(
        update(StudyVersion)
        .where(StudyVersion.id == version_id)
        .values(verdict=verdict, urgency=urgency(verdict, acting))
        .execution_options(synchronize_session=False)
    )
    return verdict


def stored_acting_outcome(
    verdict: str, outcome: FractureOutcome | BreastOutcome | None
) -> FractureOutcome | BreastOutcome | None:
    """The outcome behind a stored acting verdict (None: the verdict is not the outcome's)."""
    if outcome is not None and outcome.analysed and verdict == outcome.verdict:
        return outcome
    return None
