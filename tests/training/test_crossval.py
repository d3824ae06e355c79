"""How the folds of a cross-validation share the cores."""

from training.crossval import fold_threads


def test_a_last_fold_alone_takes_every_thread_and_the_others_one_each():
    assert [fold_threads(fold, 5, 2, 2) for fold in range(5)] == [1, 1, 1, 1, 2]
    assert [fold_threads(fold, 4, 2, 2) for fold in range(4)] == [1, 1, 1, 1]
    assert [fold_threads(fold, 5, 3, 4) for fold in range(5)] == [1, 1, 1, 2, 2]
