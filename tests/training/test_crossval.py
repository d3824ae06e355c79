"""How the folds of a cross-validation share the cores."""

from training.crossval import fold_threads


def test_a_last_fold_alone_takes_every_thread_and_the_others_one_each():
    assert [fold_threads(fold, 5, 2, 2) for fold in range(5)] == [1, 1, 1, 1, 2]
    assert [fold_threads(fold, 4, 2, 2) for fold in range(4)] == [1, 1, 1, 1]
    assert [fold_threads(fold, 5, 3, 4) for fold in range(5)] == [1, 1, 1, 2, 2]


def test_the_card_figures_measure_how_far_a_score_is_from_a_probability():
    import numpy as np

    from training.figures import Scored, fracture_figures

    rng = np.random.default_rng(0)
    outputs = rng.uniform(0, 1, 2000)
    labels = (rng.uniform(0, 1, 2000) < outputs).astype(int)  # positives as often as the output says

    def scored(probabilities):
        return [
            Scored(
                image=str(i),
                label=int(y),
                group=str(i),
                exam="",
                probability=float(p),
                doubt=0.2,
                fracture=0.8,
            )
            for i, (y, p) in enumerate(zip(labels, probabilities, strict=True))
        ]

    calibrated = fracture_figures(scored(outputs))["calibration_error"]
    squashed = fracture_figures(scored(outputs**3))["calibration_error"]  # same ranking, not a probability
    assert calibrated.value < 0.05 and calibrated.ci95_low <= calibrated.value <= calibrated.ci95_high
    assert squashed.value > 0.15 and squashed.ci95_low > calibrated.ci95_high
    assert (
        fracture_figures(scored(outputs))["auroc"].value
        == fracture_figures(scored(outputs**3))["auroc"].value
    )
