"""The settings of what a model may decide: the single-reading threshold, the bars of the evidence
gate (``triage.evidence``) and when the live evidence switches a decision off
(``triage.records.live_evidence``). ``Settings`` inherits them.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class EvidenceSettings(BaseSettings):
    """What a model's evidence, and the outcomes that come back, must show for it to decide."""

    single_read_max_score: int = Field(default=5, ge=0, le=10)
    # The evidence gate (triage.evidence): a decision that lets a reader do less is taken only when
    # the model's card shows held-out evidence at these bars, conservative by default. A rule-out:
    # sensitivity at DOUBT with a 95 % lower bound of at least 0.95, on at least 50 fractures (a Wilson
    # lower bound of 0.95 needs at least 74 fractures, every one found; the count also guards figures
    # from other intervals). Single reading: at most 15 % of cancers in the single-read arm at the 95 %
    # upper bound, on at least 30 cancers. Boxes: mAP@50 of at least 0.30 (below it most boxes point
    # a reader away from the finding).
    evidence_rule_out_min_sensitivity_low: float = Field(default=0.95, ge=0, le=1)
    evidence_rule_out_min_fractures: int = Field(default=50, ge=1)
    evidence_single_read_max_cancers_high: float = Field(default=0.15, ge=0, le=1)
    evidence_single_read_min_cancers: int = Field(default=30, ge=1)
    evidence_boxes_min_map50: float = Field(default=0.30, ge=0, le=1)
    # The live evidence, from the outcomes that come back (radiologists' readings): a decision is
    # switched off, until an admin resumes it, when among the outcomes of the last window_days of the
    # model in force there are at least min_outcomes positives (fractures; cancers) and the 95 %
    # interval of the live figure lies wholly on the wrong side of the card's claim (sensitivity at
    # DOUBT: upper bound below it; cancers single-read: lower bound above it). Small numbers cannot
    # trip it; a claim of 1.00 trips on the first miss once the count is reached. It is also switched
    # off at max_discordances discordances (a fracture on a study cleared as NO FRACTURE; a cancer
    # after a single reading) within discordance_days, however few the outcomes.
    live_evidence_min_outcomes: int = Field(default=20, ge=1)
    live_evidence_window_days: float = Field(default=180.0, gt=0)
    live_evidence_max_discordances: int = Field(default=2, ge=1)
    live_evidence_discordance_days: float = Field(default=30.0, gt=0)
    # The score drift per scanner (triage.records.drift): the window of results it counts, and the
    # studies a scanner needs in it before its population stability index is given.
    drift_window_days: float = Field(default=30.0, gt=0)
    drift_min_studies: int = Field(default=50, ge=10)
