"""The decision rules of both pipelines, as pure functions."""

import math

import pytest
import torch

from inference import breast, fracture
from inference.networks import STRIDE
from inference.predict import ImageResult, decode
from triage.cards import check_cut_points
from triage.outcomes import FractureOutcome, FractureState, FractureThresholds, Route

THRESHOLDS = FractureThresholds(fracture=0.8, doubt=0.3)
CUTS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
FOUR = {("L", "CC"): 0.05, ("L", "MLO"): 0.05, ("R", "CC"): 0.05, ("R", "MLO"): 0.05}


def views(**changes):
    """The four views at 0.05, with ``L_CC=0.7``-style changes."""
    values = dict(FOUR)
    for name, probability in changes.items():
        laterality, view = name.split("_")
        values[(laterality, view)] = probability
    return list(values.items())


@pytest.mark.parametrize(
    ("probability", "state"),
    [
        (0.95, "FRACTURE"),
        (0.8, "FRACTURE"),
        (0.5, "DOUBT"),
        (0.3, "DOUBT"),
        (0.29, "NO_FRACTURE"),
        (0.0, "NO_FRACTURE"),
        (math.nan, None),
        (1.5, None),
        (-0.1, None),
    ],
)
def test_fracture_states(probability, state):
    assert THRESHOLDS.state_for(probability) == state


def test_only_no_fracture_is_eligible_for_discharge():
    eligible = [s for s in FractureState if FractureOutcome(state=s, probability=0.1).eligible_for_discharge]
    assert eligible == [FractureState.NO_FRACTURE]
    assert not FractureOutcome(reason="not analysed").eligible_for_discharge


def test_thresholds_in_the_wrong_order_are_refused():
    with pytest.raises(ValueError, match="doubt"):
        FractureThresholds(fracture=0.2, doubt=0.5)


def test_decode_finds_the_peak_and_its_box():
    heatmap = torch.full((1, 1, 16, 16), -10.0)
    heatmap[0, 0, 5, 9] = 3.0
    sizes = torch.zeros(1, 2, 16, 16)
    sizes[0, :, 5, 9] = torch.log(torch.tensor([4.0, 2.0]))  # 4 x 2 cells
    [[box]] = decode(heatmap, sizes)
    assert box.score == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item())
    cx, cy = (9 + 0.5) * STRIDE, (5 + 0.5) * STRIDE
    assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx(
        (cx - 2 * STRIDE, cy - STRIDE, cx + 2 * STRIDE, cy + STRIDE)
    )
    images = [ImageResult(0.2, (box,)), ImageResult(0.7)]
    assert fracture.study_probability(images) == 0.7, "a study is as suspicious as its worst image"
    assert fracture.study_probability([]) == 0.0


@pytest.mark.parametrize(
    ("probability", "score", "route", "high_risk"),
    [
        (0.05, 1, "SINGLE_READ", False),
        (0.45, 5, "SINGLE_READ", False),
        (0.5, 6, "DOUBLE_READ", False),
        (0.95, 10, "DOUBLE_READ", True),
    ],
)
def test_breast_scores_and_routes(probability, score, route, high_risk):
    outcome = breast.outcome_for(views(R_MLO=probability), CUTS, single_read_max_score=5)
    assert (outcome.score, outcome.route, outcome.high_risk) == (score, route, high_risk)


def test_single_read_threshold_is_a_site_setting():
    outcome = breast.outcome_for(views(L_CC=0.65), CUTS, single_read_max_score=7)
    assert (outcome.score, outcome.route) == (7, Route.SINGLE_READ)


@pytest.mark.parametrize("bad", [math.nan, 1.2, -0.5, math.inf])
def test_invalid_output_is_never_scored(bad):
    outcome = breast.outcome_for(views(L_MLO=bad), CUTS, single_read_max_score=10)
    assert outcome.route == Route.DOUBLE_READ and outcome.score is None and "invalid" in outcome.reason


def test_a_nan_view_beside_a_valid_repeat_of_it_is_not_swallowed():
    outcome = breast.outcome_for([*views(), (("L", "CC"), math.nan)], CUTS, single_read_max_score=10)
    assert outcome.score is None and outcome.route == Route.DOUBLE_READ


def test_exam_probability_is_the_worse_breast():
    probability, per_breast = breast.exam_probability(views(L_CC=0.7))
    assert probability == 0.7 and per_breast == {"L": 0.7, "R": 0.05}


def test_cut_points_must_be_nine_and_ordered():
    with pytest.raises(ValueError, match="nine"):
        check_cut_points([0.5, 0.4, 0.3, 0.2, 0.1, 0.6, 0.7, 0.8, 0.9])
    with pytest.raises(ValueError, match="nine"):
        check_cut_points([0.1] * 8)
