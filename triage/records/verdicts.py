"""The verdict that acts: what the worklist shows and the reports say of a study version, computed here
and nowhere else. It depends on the version's state and on its result's outcome; a result whose
delivery failed (the version went NOT_ANALYSED) can therefore never show as NO FRACTURE."""

from __future__ import annotations

from triage.outcomes import BreastOutcome, FractureOutcome, Verdict
from triage.records.tables import StudyState

_SETTLED = (StudyState.ANALYSED, StudyState.REPORTED)


def acting_verdict(state: StudyState, outcome: FractureOutcome | BreastOutcome | None) -> Verdict:
    """The version's verdict: its outcome's once analysed, else why there is none."""
    if state in _SETTLED and outcome is not None and outcome.analysed:
        return outcome.verdict
    if state == StudyState.NOT_ANALYSED:
        return Verdict.NOT_ANALYSED
    if state in (StudyState.IGNORED, StudyState.SUPERSEDED):
        return Verdict.IGNORED
    return Verdict.PENDING


def acting_outcome(
    state: StudyState, outcome: FractureOutcome | BreastOutcome | None
) -> FractureOutcome | BreastOutcome | None:
    """The outcome behind the acting verdict, when there is one (None: not to be acted on)."""
    return outcome if outcome is not None and state in _SETTLED and outcome.analysed else None
