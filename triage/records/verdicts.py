"""The verdict that acts: what the worklist shows of a study version, computed here and nowhere else.

It depends on the version's state and on its result's outcome: a result whose delivery failed (the
version went NOT_ANALYSED) never shows as NO FRACTURE. When results go to a PACS, a verdict that lets
a reader do less (NO FRACTURE: eligible for discharge; SINGLE READ) acts only once the PACS has
acknowledged the results (REPORTED): before that the study is PENDING ("AI pending: read as usual"),
so no patient is cleared and no screen single-read on a result no reader can see. A verdict that asks
for more attention (FRACTURE, DOUBT, DOUBLE READ, high risk) acts at once: holding it back would only
delay the urgent. Without any destination, a recorded result acts at once.
"""

from __future__ import annotations

from triage.outcomes import BreastOutcome, FractureOutcome, Verdict
from triage.records.tables import StudyState

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
