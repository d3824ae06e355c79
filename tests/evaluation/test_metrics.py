"""The metric functions against hand-worked values and against scikit-learn."""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, precision_score, roc_auc_score

from evaluation import metrics
from evaluation.operating_points import threshold_for_sensitivity_bound, threshold_for_specificity_bound
from evaluation.workload import simulate, sweep
from triage.proportions import wilson_interval

LABELS = [1, 1, 0, 0, 1]
SCORES = [0.9, 0.4, 0.8, 0.1, 0.7]


def test_ppv_and_npv_by_hand():
    assert metrics.ppv(LABELS, SCORES, 0.5) == pytest.approx(2 / 3)  # flagged 0.9+, 0.8-, 0.7+
    assert metrics.npv(LABELS, SCORES, 0.5) == pytest.approx(1 / 2)  # cleared 0.4+, 0.1-
    assert np.isnan(metrics.ppv(LABELS, SCORES, 0.95))


def test_wilson_interval_by_hand():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0.001, 0.999)
    assert metrics.auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert metrics.brier(labels, scores) == pytest.approx(brier_score_loss(labels, scores))
    assert metrics.ppv(labels, scores, 0.5) == pytest.approx(precision_score(labels, scores >= 0.5))
    observed, predicted = calibration_curve(labels, scores, n_bins=10, strategy="uniform")
    table = metrics.calibration_bins(labels, scores)
    assert [row["observed_rate"] for row in table] == pytest.approx(list(observed))
    assert [row["mean_probability"] for row in table] == pytest.approx(list(predicted))


TRUTHS = [[(10, 10, 20, 20)], [(50, 50, 60, 60)]]
DETECTIONS = [
    [((10, 10, 20, 20), 0.9), ((80, 80, 90, 90), 0.8)],
    [((0, 0, 5, 5), 0.7), ((51, 51, 61, 61), 0.6)],  # IoU with the truth 0.68: a hit
]


def test_froc_by_hand():
    # by score: hit, miss, miss, hit over 2 images
    points = {p["false_positives_per_image"]: p["sensitivity"] for p in metrics.froc(TRUTHS, DETECTIONS)}
    assert points[0.125] == 0.5 and points[0.5] == 0.5 and points[1] == 1.0 and points[8] == 1.0


def test_average_precision_by_hand():
    # precision 1, 1/2, 1/3, 2/4 at recall 1/2, 1/2, 1/2, 1: area 0.5 * 1 + 0.5 * 0.5
    assert metrics.average_precision(TRUTHS, DETECTIONS) == pytest.approx(0.75)
    assert metrics.average_precision(TRUTHS, DETECTIONS, min_iou=0.9) == pytest.approx(0.5)


def test_a_detection_finds_one_true_box_once():
    doubled = [[((10, 10, 20, 20), 0.9), ((10, 10, 20, 20), 0.8)]]
    assert metrics.average_precision([[(10, 10, 20, 20)]], doubled) == pytest.approx(1.0)
    assert metrics.froc([[(10, 10, 20, 20)]], doubled, (0.5,))[0]["sensitivity"] == 1.0


def test_delong_on_identical_and_different_models():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 200)
    good = rng.normal(labels, 0.8)
    poor = rng.normal(labels, 3.0)
    same = metrics.delong_test(labels, good, good)
    assert same["difference"] == 0 and same["p_value"] == 1.0
    result = metrics.delong_test(labels, good, poor)
    assert result["auroc_a"] == pytest.approx(roc_auc_score(labels, good))
    assert result["auroc_b"] == pytest.approx(roc_auc_score(labels, poor))
    assert result["p_value"] < 0.01 and result["ci95_low"] > 0
    # DeLong's standard error agrees with a paired bootstrap of the difference
    differences = []
    for _ in range(400):
        index = rng.integers(0, 200, 200)
        if 0 < labels[index].sum() < 200:
            differences.append(
                roc_auc_score(labels[index], good[index]) - roc_auc_score(labels[index], poor[index])
            )
    assert result["standard_error"] == pytest.approx(np.std(differences), rel=0.25)


def test_thresholds_on_lower_bounds():
    labels = [1] * 50 + [0] * 50
    scores = list(np.linspace(0.5, 1.0, 50)) + list(np.linspace(0.0, 0.6, 50))
    doubt = threshold_for_sensitivity_bound(labels, scores, 0.8)
    caught = sum(s >= doubt for s in scores[:50])
    assert wilson_interval(caught, 50)[0] >= 0.8 > wilson_interval(caught - 1, 50)[0]
    fracture = threshold_for_specificity_bound(labels, scores, 0.8)
    cleared = sum(s < fracture for s in scores[50:])
    assert wilson_interval(cleared, 50)[0] >= 0.8 > wilson_interval(cleared - 1, 50)[0]
    with pytest.raises(ValueError, match=r"lower bound reaches 0\.99"):
        threshold_for_sensitivity_bound(labels, scores, 0.99)  # 50 positives cannot show it


def test_workload_simulation_by_hand():
    scores = [1, 2, 3, 5, 6, 7, 9, 10, None, 4]  # None: not analysed, double read
    cancers = [0, 0, 1, 0, 0, 1, 0, 1, 0, 0]
    result = simulate(scores, cancers, single_read_max_score=5)
    assert result.single_read_share == 0.5  # scores 1, 2, 3, 4, 5
    assert result.reads_per_1000_exams == 1500  # 5 single + 5 double = 15 reads for 10 exams
    assert result.workload_reduction == pytest.approx(0.25)
    assert (result.cancers, result.cancers_in_single_read_arm) == (3, 1)  # the score-3 cancer
    everything = sweep(scores, cancers)
    assert everything[0].reads_per_1000_exams == 2000 and everything[10].single_read_share == 0.9


@pytest.mark.parametrize("single_read_max_score", [0, 1, 5, 9, 10])
def test_the_double_reading_threshold_matches_the_score_route(single_read_max_score):
    from types import SimpleNamespace

    from evaluation.evaluate import operating_points
    from inference.breast import score_for

    cuts = tuple(round(0.1 * i, 1) for i in range(1, 10))
    card = SimpleNamespace(pipeline="breast", decile_cut_points=cuts)
    threshold = operating_points(card, single_read_max_score)["double_reading"]
    for probability in [0.0, 0.05, 0.1, 0.3, 0.5, 0.55, 0.9, 0.95, 1.0]:
        double = score_for(probability, cuts) > single_read_max_score
        assert (probability >= threshold) == double, (probability, single_read_max_score)
