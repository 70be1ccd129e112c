"""The reference engine equals a direct LassoCV call with the SPEC's weights and folds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LassoCV
from sklearn.metrics import r2_score
from sklearn.model_selection import StratifiedKFold

from tfbp_dask.datagen import make_dataset
from tfbp_dask.engines import BootstrapFits, LassoParams, get_engine
from tfbp_dask.resampling import (
    bootstrap_draws,
    bootstrap_test_folds,
    draws_to_weights,
    stratification_classes,
)


@pytest.fixture(scope="module")
def problem():
    data = make_dataset(n_genes=300, n_tfs=10, seed=5)
    binding = data.predictors.drop(columns="gene_id").to_numpy()
    X = binding[:, :1] * binding[:, 1:]
    y = data.response["TF01"].to_numpy()
    classes = stratification_classes(binding[:, 0], (0, 8, 12, np.inf))
    return X, y, classes


def test_chunk_equals_direct_lassocv(problem):
    X, y, classes = problem
    n = len(y)
    weights = draws_to_weights(bootstrap_draws(n, 3, seed=9))
    folds = bootstrap_test_folds(classes, np.arange(3))
    fits = get_engine("sklearn")(X, y, np.arange(3), weights, folds, LassoParams(max_iter=5000))
    for b in range(3):
        # Independent rebuild of the folds and the weights (SPEC §4–§6).
        stream = np.random.RandomState(9)
        for _ in range(b + 1):
            idx = stream.randint(0, n, size=n)
        w = np.bincount(idx, minlength=n).astype(float)
        cv = list(StratifiedKFold(4, shuffle=True, random_state=b).split(X, classes))
        direct = LassoCV(
            fit_intercept=True,
            selection="random",
            alphas=100,
            eps=1e-3,
            tol=1e-4,
            max_iter=5000,
            random_state=b,
            cv=cv,
        ).fit(X, y, sample_weight=w)
        np.testing.assert_array_equal(fits.coef[b], direct.coef_)
        assert fits.alpha[b] == direct.alpha_
        assert fits.intercept[b] == direct.intercept_
        assert fits.n_iter[b] == direct.n_iter_
        assert fits.cv_mse[b] == pytest.approx(direct.mse_path_.mean(axis=1).min())
        assert fits.r2[b] == pytest.approx(r2_score(y, direct.predict(X), sample_weight=w))


def test_normalised_weights_give_the_same_fit(problem):
    X, y, classes = problem
    draws = bootstrap_draws(len(y), 2, seed=1)
    folds = bootstrap_test_folds(classes, np.arange(2))
    engine = get_engine("sklearn")
    raw = engine(X, y, np.arange(2), draws_to_weights(draws), folds, LassoParams())
    normal = engine(
        X, y, np.arange(2), draws_to_weights(draws, normalize=True), folds, LassoParams()
    )
    np.testing.assert_allclose(raw.coef, normal.coef, rtol=1e-6, atol=1e-9)


def test_concatenate_orders_by_bootstrap():
    def part(ids):
        ids = np.asarray(ids)
        k = len(ids)
        return BootstrapFits(
            ids,
            ids[:, None] * np.ones((k, 2)),
            ids * 1.0,
            ids * 1.0,
            ids * 1.0,
            ids,
            ids * 1.0,
            ids % 2 == 1,
        )

    merged = BootstrapFits.concatenate([part([4, 5]), part([0, 1]), part([2, 3])])
    np.testing.assert_array_equal(merged.bootstrap, np.arange(6))
    np.testing.assert_array_equal(merged.coef[:, 0], np.arange(6))
    np.testing.assert_array_equal(merged.max_iter_reached, np.arange(6) % 2 == 1)


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine("nope")
