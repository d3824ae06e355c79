"""The evidence gate: each decision that lets a reader do less is taken only where the model's card
carries held-out evidence at the site's bar, or an admin overrode that; the outcome says which."""

import json
from pathlib import Path

import pytest

from testkit.synthetic import synthetic_evidence
from triage import evidence
from triage.cards import parse_card, read_card
from triage.evidence import DEFAULT_BARS, Gate, Gatekeeper, gate_for
from triage.outcomes import BreastOutcome, Decision, FractureOutcome, Route, Verdict
from triage.settings import load_settings

MODELS = Path(__file__).parents[1] / "models"
CARD = {
    "version": "0-test", "input_size": 64, "intended_use": "tests", "data": [], "preprocessing": "same",
    "held_out": "none", "metrics": {}, "weights_sha256": "0" * 64, "reproduce": "tests", "created": "now",
    "architecture": "centrepoint-lite0",
}  # fmt: skip


def fracture_card(**values):
    return parse_card({**CARD, "name": "f", "pipeline": "fracture", "fracture_threshold": 0.6,
                       "doubt_threshold": 0.2, **values})  # fmt: skip


def breast_card(**values):
    return parse_card({**CARD, "name": "b", "pipeline": "breast",
                       "decile_cut_points": [0.1 * i for i in range(1, 10)], **values})  # fmt: skip


def metric(value, low, high, n):
    return {"value": value, "ci95_low": low, "ci95_high": high, "n": n}


def test_a_card_without_evidence_takes_no_decision_and_says_why():
    fracture = gate_for(fracture_card(), DEFAULT_BARS, 0)
    assert set(fracture.not_enabled) == {Decision.RULE_OUT, Decision.BOXES}
    assert "no rule-out evidence" in fracture.not_enabled[Decision.RULE_OUT]
    breast = gate_for(breast_card(), DEFAULT_BARS, 5)
    assert set(breast.not_enabled) == {Decision.SINGLE_READ, Decision.BOXES}
    assert "threshold of 5" in breast.not_enabled[Decision.SINGLE_READ]


def test_evidence_at_the_bar_enables_every_decision():
    fracture = gate_for(fracture_card(evidence=synthetic_evidence(0.2)), DEFAULT_BARS, 0)
    assert fracture == Gate(claims={Decision.RULE_OUT: 1.0}), (
        "each on; the card's claim kept for the live evidence"
    )
    breast = gate_for(breast_card(evidence=synthetic_evidence(single_read_max_score=5)), DEFAULT_BARS, 5)
    assert not breast.not_enabled and not breast.overridden
    assert set(breast.claims) == {Decision.SINGLE_READ}


@pytest.mark.parametrize(
    ("sensitivity", "doubt", "said"),
    [
        (metric(1.0, 0.93, 1.0, 49), 0.2, "measured on 49 fractures; the site's bar asks for at least 50"),
        (metric(0.97, 0.94, 0.99, 200), 0.2, "95 % lower bound 0.940"),
        (metric(1.0, 0.97, 1.0, 120), 0.3, "measured at DOUBT 0.3, not at the threshold in force (0.2)"),
    ],
)
def test_rule_out_evidence_below_the_bar_or_at_another_threshold_is_not_enough(sensitivity, doubt, said):
    found = synthetic_evidence(doubt)
    found["rule_out"] = {**found["rule_out"], "sensitivity_at_doubt": sensitivity}  # type: ignore[dict-item]
    gate = gate_for(fracture_card(evidence=found), DEFAULT_BARS, 0)
    assert said in gate.not_enabled[Decision.RULE_OUT]


@pytest.mark.parametrize(
    ("measured_at", "cancers", "in_force", "said"),
    [
        (5, metric(0.05, 0.01, 0.12, 29), 5, "among 29 cancers"),
        (5, metric(0.1, 0.05, 0.2, 100), 5, "upper bound 20%"),
        (4, metric(0.0, 0.0, 0.05, 100), 5, "no single-reading evidence at a threshold of 5"),
        (7, metric(0.1, 0.05, 0.14, 100), 5, None),  # a higher threshold's evidence covers a lower one
    ],
)
def test_single_reading_evidence(measured_at, cancers, in_force, said):
    found = synthetic_evidence(single_read_max_score=measured_at)
    found["single_read"][0]["cancers_single_read"] = cancers  # type: ignore[index]
    gate = gate_for(breast_card(evidence=found), DEFAULT_BARS, in_force)
    assert (
        gate.not_enabled.get(Decision.SINGLE_READ) == said or said in gate.not_enabled[Decision.SINGLE_READ]
    )


def test_boxes_below_the_bar_are_not_enabled():
    found = synthetic_evidence(0.2)
    found["boxes"] = {"map50": metric(0.04, 0.01, 0.08, 500), "source": "synthetic"}
    gate = gate_for(fracture_card(evidence=found), DEFAULT_BARS, 0)
    assert list(gate.not_enabled) == [Decision.BOXES]
    assert gate.not_enabled[Decision.BOXES] == "mAP@50 0.04 (95 % CI 0.01-0.08) is below the site's bar (0.3)"


def test_an_override_enables_a_decision_and_keeps_the_evidence_in_its_words():
    gate = Gatekeeper(overrides=lambda name, version: {Decision.RULE_OUT: f"by admin for {name} {version}"})(
        fracture_card()
    )
    assert Decision.RULE_OUT not in gate.not_enabled and Decision.BOXES in gate.not_enabled
    assert gate.overridden[Decision.RULE_OUT].startswith("by admin for f 0-test; the evidence: ")


def test_the_bars_are_settings():
    strict = evidence.Bars.of(load_settings(evidence_rule_out_min_sensitivity_low=0.99))
    found = synthetic_evidence(0.2)  # lower bound 0.97: enough at the default bar, not at 0.99
    assert Decision.RULE_OUT in gate_for(fracture_card(evidence=found), strict, 0).not_enabled
    assert Decision.RULE_OUT not in gate_for(fracture_card(evidence=found), DEFAULT_BARS, 0).not_enabled


def test_the_bundled_models_take_only_what_their_cards_support():
    """The bundled fracture model's test part supports its rule-out (sensitivity at DOUBT 1.0, lower
    bound 0.96 on 93 fractures), not its boxes (mAP@50 0.04); the breast model has no single-reading
    evidence at all: every screen is double read out of the box."""
    fracture = Gatekeeper()(read_card(MODELS / "fracture"))
    assert list(fracture.not_enabled) == [Decision.BOXES]
    breast = Gatekeeper()(read_card(MODELS / "breast"), load_settings().single_read_max_score)
    assert set(breast.not_enabled) == {Decision.SINGLE_READ, Decision.BOXES}
    card = json.loads((MODELS / "fracture" / "card.json").read_text())
    assert card["evidence"]["rule_out"]["sensitivity_at_doubt"] == card["metrics"]["sensitivity_at_doubt"]


def fracture_outcome(state, probability):
    return FractureOutcome.model_validate({
        "state": state, "probability": probability, "thresholds": {"fracture": 0.6, "doubt": 0.2},
        "images": [{"sop_instance_uid": "1.2.3", "probability": probability,
                    "boxes": [{"corners": [1.0, 2.0, 30.0, 40.0], "score": probability}]}],
    })  # fmt: skip


def test_no_fracture_without_a_rule_out_reads_as_normal_reading_and_clears_nobody():
    off = Gate(not_enabled={Decision.RULE_OUT: "no evidence", Decision.BOXES: "no evidence"})
    gated = evidence.apply(fracture_outcome("NO_FRACTURE", 0.05), off)
    assert gated.verdict is Verdict.NORMAL_READING and not gated.eligible_for_discharge
    assert gated.probability == 0.05 and gated.images[0].boxes, "the advisory figures are kept"
    assert gated.marks == (), "boxes are kept in the result, never shown"
    fracture = evidence.apply(fracture_outcome("FRACTURE", 0.9), off)
    assert fracture.verdict is Verdict.FRACTURE, "a verdict that asks for more attention is not gated"
    cleared = evidence.apply(fracture_outcome("NO_FRACTURE", 0.05), Gate())
    assert cleared.verdict is Verdict.NO_FRACTURE and cleared.eligible_for_discharge and cleared.marks


def test_a_screen_without_single_reading_is_double_read_with_its_score_kept():
    screen = BreastOutcome(score=3, route=Route.SINGLE_READ, probability=0.08, single_read_max_score=5)
    gated = evidence.apply(screen, Gate(not_enabled={Decision.SINGLE_READ: "no evidence"}))
    assert gated.verdict is Verdict.DOUBLE_READ and gated.score == 3
    assert gated.not_enabled == {Decision.SINGLE_READ: "no evidence"}
    with pytest.raises(ValueError, match="single reading is not enabled"):
        BreastOutcome(score=3, route=Route.SINGLE_READ, not_enabled={Decision.SINGLE_READ: "no evidence"})


def test_a_not_analysed_outcome_is_left_as_it_is():
    unanalysed = FractureOutcome(reason="unreadable")
    assert evidence.apply(unanalysed, Gate(not_enabled={Decision.RULE_OUT: "x"})) is unanalysed
