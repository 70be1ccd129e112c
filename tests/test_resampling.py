"""Bootstrap draws, weights, stratification classes and folds vs independent computations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import resample

from tfbp_dask.resampling import (
    bootstrap_draws,
    bootstrap_test_folds,
    cv_fold_labels,
    draws_to_weights,
    rank,
    stratification_classes,
    stratification_problem,
)


def test_draws_match_sklearn_resample_stream():
    n, n_boot, seed = 37, 5, 11
    draws = bootstrap_draws(n, n_boot, seed)
    stream = np.random.RandomState(seed)
    expected = [resample(np.arange(n), replace=True, random_state=stream) for _ in range(n_boot)]
    np.testing.assert_array_equal(draws, np.stack(expected))


def test_weights_count_draws_and_normalise():
    draws = bootstrap_draws(50, 4, 0)
    weights = draws_to_weights(draws)
    for b in range(4):
        counts = np.array([np.sum(draws[b] == i) for i in range(50)], dtype=float)
        np.testing.assert_array_equal(weights[b], counts)
    normalised = draws_to_weights(draws, normalize=True)
    np.testing.assert_allclose(normalised.sum(axis=1), 1.0)
    np.testing.assert_allclose(normalised * 50, weights)


def test_classes_follow_descending_min_rank_bins():
    binding = np.array([5.0, 9.0, 9.0, 1.0, 7.0, 3.0, 8.0, 0.5, 2.0, 6.0, 4.0, 0.1, 0.2, 0.3])
    classes = stratification_classes(binding, (0, 2, 4, np.inf))
    # Descending ranks with ties at the minimum: 1 + the number of strictly larger values.
    order = sorted(binding, reverse=True)
    expected_ranks = np.array([order.index(v) + 1 for v in binding])
    expected = np.where(expected_ranks <= 2, 1, np.where(expected_ranks <= 4, 2, 3))
    np.testing.assert_array_equal(classes, expected)
    assert classes[1] == classes[2] == 1  # tied top binders share rank 1


@pytest.mark.parametrize("seed", [0, 5, 42])
def test_fold_labels_match_stratified_kfold(seed):
    classes = np.repeat([1, 2, 3], [8, 4, 40])
    labels = cv_fold_labels(classes, seed)
    splitter = StratifiedKFold(n_splits=4, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(classes)), classes)):
        np.testing.assert_array_equal(np.flatnonzero(labels == fold), test)


def test_bootstrap_folds_are_seeded_by_bootstrap_index():
    """Bootstrap b's folds are StratifiedKFold's with random_state=b, whatever the other
    bootstraps of the chunk (one stream is re-seeded per bootstrap)."""
    classes = np.repeat([1, 2, 3], [8, 4, 40])
    bootstraps = np.array([0, 1, 2, 7, 1000, 3])
    folds = bootstrap_test_folds(classes, bootstraps)
    for row, b in enumerate(bootstraps):
        splitter = StratifiedKFold(n_splits=4, shuffle=True, random_state=int(b))
        for fold, (_, test) in enumerate(splitter.split(np.zeros(len(classes)), classes)):
            np.testing.assert_array_equal(np.flatnonzero(folds[row] == fold), test)
    assert not np.array_equal(folds[0], folds[1])


def test_small_classes_are_allowed_without_warning():
    classes = np.array([1, 2, 2] + [3] * 30)
    labels = cv_fold_labels(classes, 0)  # pytest turns any warning into an error
    assert set(np.unique(labels)) == {0, 1, 2, 3}


@pytest.mark.parametrize("layout", range(6))
def test_fold_labels_match_stratified_kfold_on_random_layouts(layout):
    rng = np.random.default_rng(layout)
    n = int(rng.integers(20, 400))
    bins = (0, *sorted(rng.choice(np.arange(1, n), size=int(rng.integers(1, 4)), replace=False)))
    binding = np.round(rng.gamma(0.7, 1.0, size=n), 1)  # rounding makes rank ties
    classes = stratification_classes(binding, (*bins, np.inf))
    for seed in (0, 1, 17, 2**31):
        expected = np.empty(n, dtype=int)
        splitter = StratifiedKFold(n_splits=4, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # scikit-learn (the reference here) warns of classes smaller than the folds, which
            # these layouts are made to have; the warning is about its input, not our result.
            warnings.filterwarnings("ignore", "The least populated class", UserWarning)
            for fold, (_, test) in enumerate(splitter.split(np.zeros(n), classes)):
                expected[test] = fold
        np.testing.assert_array_equal(cv_fold_labels(classes, seed), expected)


def test_no_class_large_enough_is_refused():
    with pytest.raises(ValueError, match="at least 4 rows"):
        cv_fold_labels(np.array([1, 1, 2, 2, 3]), 0)


@pytest.mark.parametrize("ties", ["min", "average"])
def test_rank_equals_scipy_rankdata(ties):
    from scipy.stats import rankdata

    rng = np.random.default_rng(5)
    cases = [
        np.array([]),
        np.array([2.5]),
        np.array([3.0, 1.0, 1.0, 2.0, 3.0, 3.0, -0.0, 0.0]),
        rng.integers(0, 7, size=500).astype(float),  # many ties
        rng.standard_normal(300),  # none
        -rng.gamma(0.6, 1.5, size=1000).round(2),  # binding-like
        np.array([np.inf, -np.inf, 1.0, np.inf]),
    ]
    for values in cases:
        ours = rank(values, ties=ties)
        expected = rankdata(values, method=ties)
        assert ours.dtype == expected.dtype
        np.testing.assert_array_equal(ours, expected)


def test_rank_refuses_nan_and_unknown_ties():
    with pytest.raises(ValueError, match="NaN"):
        rank(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="ties"):
        rank(np.array([1.0]), ties="dense")


@pytest.mark.parametrize("layout", range(40))
def test_stratification_problem_exactly_when_stratified_kfold_fails(layout):
    rng = np.random.default_rng(100 + layout)
    n = int(rng.integers(4, 30))
    edges = sorted(rng.choice(np.arange(1, 40), size=int(rng.integers(1, 12)), replace=False))
    bins = (0, *edges, np.inf)
    classes = stratification_classes(rng.gamma(0.7, 1.0, size=n), bins)
    problem = stratification_problem(classes, bins)
    splitter = StratifiedKFold(n_splits=4, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        # scikit-learn warns of classes smaller than the folds: these layouts have them.
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        try:
            list(splitter.split(np.zeros(n), classes))
        except ValueError:
            assert problem is not None
            counts = np.bincount(classes, minlength=len(bins))[1:]
            assert f"holds {counts.max()});" in problem
        else:
            assert problem is None


def test_draws_take_the_smallest_unsigned_type_and_keep_their_values() -> None:
    for n, dtype in ((256, np.uint8), (257, np.uint16), (70000, np.uint32)):
        draws = bootstrap_draws(n, 2, seed=5)
        assert draws.dtype == dtype
        stream = np.random.RandomState(5)
        expected = np.stack([stream.randint(0, n, size=n) for _ in range(2)])
        np.testing.assert_array_equal(draws, expected)
