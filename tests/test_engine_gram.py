"""The ``gram`` engine: building blocks against numpy, results against the ``sklearn`` engine.

Parity is checked on the stated test set ``PARITY_SETS`` (six synthetic
data sets of 300-1000 genes and 10-25 pTF x TF interaction terms, 40
bootstraps each, pooled), for both path solvers:

* ``cd`` replays scikit-learn's coordinate descent, so it must reproduce the
  ``sklearn`` engine to rounding, chosen alpha and iteration counts included;
* ``homotopy`` solves the lasso path exactly, while the ``sklearn`` engine
  stops coordinate descent at a duality-gap tolerance, so the two differ by
  that tolerance (the issue's parity thresholds);
  ``test_homotopy_exact_against_tight_sklearn`` shows the differences vanish
  when scikit-learn is run to a tight tolerance.

The default solver at the widths of stage 1 (more than ``CD_MAX_TERMS``
terms) is the homotopy; ``WIDE_SETS`` (1500-3000 genes, 60-150 correlated
terms, 88 bootstraps pooled) check it there with the same thresholds, and
that both engines find the same significant terms at the default CI levels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from kernel_fits import FIT_SCRIPT
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LassoCV, lars_path_gram

from tfbp_dask import datagen, resampling, stats
from tfbp_dask.engines import ENGINES, BootstrapFits, LassoParams, get_engine, gram
from tfbp_dask.engines import sklearn as sk_engine
from tfbp_dask.engines._gram_kernels import _centred_problem, _homotopy, _test_mse

PARAMS = LassoParams()
BINS = (0, 8, 12, np.inf)
# (n_genes, n_tfs, seed): n_tfs - 1 interaction terms.
PARITY_SETS = [(300, 11, 0), (500, 16, 1), (800, 21, 2), (1000, 26, 3), (600, 12, 4), (1000, 16, 5)]
N_BOOTSTRAPS = 40
GRID_STEP = np.log(1 / PARAMS.eps) / (PARAMS.n_alphas - 1)  # log-spacing of the grid


def _problem(n_genes: int, n_tfs: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design (pTF x other TFs), response of the pTF and stratification classes."""
    data = datagen.make_dataset(n_genes=n_genes, n_tfs=n_tfs, seed=seed)
    binding = data.predictors.iloc[:, 1:].to_numpy()
    ptf = binding[:, 0]
    X = ptf[:, None] * binding[:, 1:]
    y = data.response.iloc[:, 1].to_numpy()
    return X, y, resampling.stratification_classes(ptf, BINS)


def _resamples(
    classes: np.ndarray, n_bootstraps: int, seed: int, normalize: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bootstrap = np.arange(n_bootstraps)
    draws = resampling.bootstrap_draws(len(classes), n_bootstraps, seed)
    weights = resampling.draws_to_weights(draws, normalize=normalize)
    return bootstrap, weights, resampling.bootstrap_test_folds(classes, bootstrap)


def _wide_problem(
    n_genes: int, n_tfs: int, n_partners: int, effect: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As ``_problem``, with ``n_partners`` planted interactions of size ``effect``."""
    data = datagen.make_dataset(
        n_genes=n_genes, n_tfs=n_tfs, n_partners=n_partners, effect=effect, seed=seed
    )
    binding = data.predictors.iloc[:, 1:].to_numpy()
    ptf = binding[:, 0]
    y = data.response.iloc[:, 1].to_numpy()
    return ptf[:, None] * binding[:, 1:], y, resampling.stratification_classes(ptf, BINS)


def _grid_distance(alpha_a: np.ndarray, alpha_b: np.ndarray) -> np.ndarray:
    """Signed number of grid points between two chosen alphas of the same grid."""
    return np.rint(np.log(alpha_a / alpha_b) / GRID_STEP).astype(int)


def _augmented(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The engine's shifted augmented columns ``[x - mean, 1, y - mean]``."""
    return np.column_stack([X - X.mean(axis=0), np.ones(len(y)), y - y.mean()])


@pytest.fixture(scope="module")
def parity() -> list[tuple[np.ndarray, BootstrapFits, dict[str, BootstrapFits]]]:
    """Both engines on every parity set: (y, sklearn fits, gram fits by solver)."""
    results = []
    for n_genes, n_tfs, seed in PARITY_SETS:
        X, y, classes = _problem(n_genes, n_tfs, seed)
        bootstrap, weights, folds = _resamples(classes, N_BOOTSTRAPS, seed + 10)
        reference = sk_engine.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS)
        fast = {
            solver: gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS, solver=solver)
            for solver in ("cd", "homotopy")
        }
        results.append((y, reference, fast))
    return results


# --------------------------------------------------------------------------- building blocks


def test_registered() -> None:
    assert "gram" in ENGINES
    assert get_engine("gram") is gram.fit_bootstraps


@pytest.mark.parametrize("normalize", [False, True])
def test_fold_statistics_match_direct_weighted_sums(normalize: bool) -> None:
    rng = np.random.default_rng(0)
    n, p, k = 200, 7, 3
    A = _augmented(rng.normal(size=(n, p)), rng.normal(size=n))
    draws = rng.integers(0, n, size=(k, n))
    weights = resampling.draws_to_weights(draws, normalize=normalize)
    folds = rng.integers(0, 4, size=(k, n)).astype(np.int8)
    stats = gram._fold_statistics(A, weights, folds.astype(np.int64), 4)
    assert stats.shape == (k, 4, p + 2, p + 2)
    for b in range(k):
        for f in range(4):
            rows = folds[b] == f
            direct = (A[rows] * weights[b, rows, None]).T @ A[rows]
            np.testing.assert_allclose(stats[b, f], direct, rtol=1e-12, atol=1e-12)


def test_training_problem_by_subtraction_matches_direct_centred_gram() -> None:
    # Columns far from zero: without the engine's shift, subtracting Grams
    # would lose about 12 of 16 digits here.
    rng = np.random.default_rng(1)
    n, p = 500, 6
    X = 1000.0 + rng.normal(size=(n, p)) * np.arange(1, p + 1)
    y = 50.0 + X[:, 0] - X[:, 1] + rng.normal(size=n)
    w = resampling.draws_to_weights(rng.integers(0, n, size=(1, n)))[0]
    labels = rng.integers(0, 4, size=n)
    stats = gram._fold_statistics(_augmented(X, y), w[None], labels[None], 4)[0]
    total = stats.sum(axis=0)
    scale = np.diag(total)[:p] / total[p, p]
    for f in range(4):
        Q, q, yy, xbar, ybar, weight, usable = _centred_problem(total - stats[f], scale)
        train = labels != f
        wt = w[train]
        Xc = X[train] - np.average(X[train], axis=0, weights=wt)
        yc = y[train] - np.average(y[train], weights=wt)
        np.testing.assert_allclose(Q, (Xc * wt[:, None]).T @ Xc / wt.sum(), rtol=1e-9)
        np.testing.assert_allclose(q, Xc.T @ (wt * yc) / wt.sum(), rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(yy, np.sum(wt * yc**2) / wt.sum(), rtol=1e-9)
        np.testing.assert_allclose(xbar + X.mean(axis=0), np.average(X[train], 0, wt), rtol=1e-14)
        np.testing.assert_allclose(ybar + y.mean(), np.average(y[train], weights=wt), rtol=1e-14)
        assert weight == pytest.approx(wt.sum())
        assert usable.all()


def test_test_mse_matches_direct_residuals() -> None:
    rng = np.random.default_rng(2)
    n, p = 300, 5
    X = 3.0 + rng.normal(size=(n, p))
    y = X @ rng.normal(size=p) + rng.normal(size=n)
    w = rng.poisson(1.0, size=n).astype(float)
    test = rng.random(n) < 0.25
    A = _augmented(X, y)
    H_test = (A[test] * w[test, None]).T @ A[test]
    xbar_train = rng.normal(size=p) * 0.1
    ybar_train = 0.2
    coefs = rng.normal(size=(8, p)) * (rng.random((8, p)) < 0.6)
    mse = _test_mse(coefs, H_test, xbar_train, ybar_train)
    # Shifted coordinates: prediction ybar + (x - xbar)' beta.
    Xs, ys = A[test, :p], A[test, p + 1]
    for a in range(len(coefs)):
        residual = ys - ybar_train - (Xs - xbar_train) @ coefs[a]
        assert mse[a] == pytest.approx(np.average(residual**2, weights=w[test]), rel=1e-10)


def _random_problem(rng: np.random.Generator, n: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated columns (their lasso paths drop variables), weighted, centred."""
    latent = rng.normal(size=(n, 3))
    X = latent @ rng.normal(size=(3, p)) + rng.uniform(0.05, 1.0) * rng.normal(size=(n, p))
    y = X @ (rng.normal(size=p) * (rng.random(p) < 0.3)) + rng.normal(size=n)
    w = rng.poisson(1.0, size=n).astype(float)
    A = _augmented(X, y)
    H = (A * w[:, None]).T @ A
    Q, q, *_ = _centred_problem(H, np.diag(H)[:p] / H[p, p])
    return Q, q


def test_homotopy_matches_lars_path_gram() -> None:
    rng = np.random.default_rng(3)
    n_drops = 0
    for _ in range(40):
        p = int(rng.integers(2, 30))
        Q, q = _random_problem(rng, int(rng.integers(40, 200)), p)
        alphas = np.geomspace(np.abs(q).max(), np.abs(q).max() * 1e-3, 100)
        coefs = np.empty((100, p))
        _homotopy(Q, q, np.ones(p, dtype=bool), alphas, 100, 10_000, coefs)
        kinks, _, path = lars_path_gram(
            Xy=q, Gram=Q, n_samples=1, method="lasso", alpha_min=alphas[-1] * 0.999
        )
        n_drops += np.sum((path[:, :-1] != 0) & (path[:, 1:] == 0))
        reference = np.array([np.interp(-alphas, -kinks, path[j]) for j in range(p)]).T
        np.testing.assert_allclose(coefs, reference, rtol=0, atol=1e-9 * np.abs(reference).max())
    assert n_drops > 0  # the Cholesky downdate was exercised


def test_homotopy_partial_path_and_step_cap() -> None:
    rng = np.random.default_rng(4)
    Q, q = _random_problem(rng, 100, 12)
    alphas = np.geomspace(np.abs(q).max(), np.abs(q).max() * 1e-3, 100)
    full = np.empty((100, 12))
    steps_full, cut = _homotopy(Q, q, np.ones(12, dtype=bool), alphas, 100, 10_000, full)
    assert not cut
    part = np.full((100, 12), np.nan)
    steps_part, cut = _homotopy(Q, q, np.ones(12, dtype=bool), alphas, 40, 10_000, part)
    np.testing.assert_array_equal(part[:40], full[:40])
    assert np.isnan(part[40:]).all() and 0 < steps_part <= steps_full and not cut
    assert not full[0].any()  # alpha_max: exactly zero
    capped = np.empty((100, 12))
    assert _homotopy(Q, q, np.ones(12, dtype=bool), alphas, 100, 3, capped) == (3, True)
    # A cap equal to the steps the path needs does not cut it.
    exact = np.empty((100, 12))
    assert _homotopy(Q, q, np.ones(12, dtype=bool), alphas, 100, steps_full, exact) == (
        steps_full,
        False,
    )
    np.testing.assert_array_equal(exact, full)


def test_homotopy_collinear_and_constant_columns() -> None:
    rng = np.random.default_rng(5)
    n, p = 150, 8
    X = rng.normal(size=(n, p))
    X[:, 3] = X[:, 2]  # duplicate: the lasso solution is not unique
    X[:, 5] = -2.0 * X[:, 2]
    X[:, 6] = 4.2  # constant
    y = X[:, 2] + X[:, 0] + rng.normal(size=n)
    w = rng.poisson(1.0, size=n).astype(float)
    A = _augmented(X, y)
    H = (A * w[:, None]).T @ A
    Q, q, _, _, _, _, usable = _centred_problem(H, np.diag(H)[:p] / H[p, p])
    assert not usable[6] and usable[[0, 1, 2, 3, 4, 5, 7]].all()
    alphas = np.geomspace(np.abs(q).max(), np.abs(q).max() * 1e-3, 50)
    coefs = np.empty((50, p))
    _homotopy(Q, q, usable, alphas, 50, 10_000, coefs)
    assert not coefs[:, 6].any()
    # Same objective as the (unique-objective) LARS path on the usable columns.
    keep = np.flatnonzero(usable)
    kinks, _, path = lars_path_gram(
        Xy=q[keep],
        Gram=Q[np.ix_(keep, keep)],
        n_samples=1,
        method="lasso",
        alpha_min=alphas[-1] * 0.999,
    )
    for a, alpha in enumerate(alphas):
        ref = np.zeros(p)
        ref[keep] = [np.interp(-alpha, -kinks, path[j]) for j in range(len(keep))]

        def objective(beta: np.ndarray, alpha: float = alpha) -> float:
            return 0.5 * beta @ Q @ beta - q @ beta + alpha * np.abs(beta).sum()

        assert objective(coefs[a]) <= objective(ref) + 1e-12 * abs(objective(ref))


@pytest.mark.parametrize("normalize", [False, True])
def test_alpha_grid_matches_sklearn(normalize: bool) -> None:
    X, y, classes = _problem(500, 16, 7)
    bootstrap, weights, folds = _resamples(classes, 4, 17, normalize=normalize)
    stats = gram._fold_statistics(_augmented(X, y), weights, folds.astype(np.int64), 4)
    grids = gram._alpha_grids(stats.sum(axis=1), PARAMS)
    for b in bootstrap:
        model = LassoCV(alphas=PARAMS.n_alphas, eps=PARAMS.eps, cv=2, max_iter=1)
        with warnings.catch_warnings():
            # max_iter=1: only the grid is of interest here.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y, sample_weight=weights[b])
        np.testing.assert_allclose(grids[b], model.alphas_, rtol=1e-10)


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("solver", ["cd", "homotopy"])
def test_chosen_alpha_parity(parity, solver: str) -> None:
    distance = np.concatenate(
        [_grid_distance(ref.alpha, fast[solver].alpha) for _, ref, fast in parity]
    )
    assert np.mean(distance == 0) >= 0.90
    assert np.abs(distance).max() <= 1


@pytest.mark.parametrize("solver", ["cd", "homotopy"])
def test_coef_parity(parity, solver: str) -> None:
    worst = np.concatenate(
        [
            np.abs(ref.coef - fast[solver].coef).max(axis=1) / np.abs(ref.coef).max()
            for _, ref, fast in parity
        ]
    )
    assert np.percentile(worst, 95) <= 0.01


def test_cd_replays_sklearn_to_rounding(parity) -> None:
    # The replay takes the same coordinate steps and stops where scikit-learn
    # stops: same alphas, same sweeps, coefficients equal to rounding.
    for y, ref, fast in parity:
        cd = fast["cd"]
        np.testing.assert_allclose(cd.alpha, ref.alpha, rtol=1e-12)
        np.testing.assert_array_equal(cd.n_iter, ref.n_iter)
        np.testing.assert_array_equal(cd.max_iter_reached, ref.max_iter_reached)
        np.testing.assert_allclose(cd.coef, ref.coef, rtol=0, atol=1e-10 * np.abs(ref.coef).max())
        np.testing.assert_allclose(cd.intercept, ref.intercept, rtol=0, atol=1e-10 * y.std())
        np.testing.assert_allclose(cd.cv_mse, ref.cv_mse, rtol=1e-10)
        np.testing.assert_allclose(cd.r2, ref.r2, rtol=0, atol=1e-10)


def test_auto_solver_by_width(parity) -> None:
    X, y, classes = _problem(300, 11, 0)
    bootstrap, weights, folds = _resamples(classes, 3, 10)
    auto = gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS)
    cd = gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS, solver="cd")
    np.testing.assert_array_equal(auto.coef, cd.coef)
    wide_X = np.tile(X, (1, gram.CD_MAX_TERMS // X.shape[1] + 1))[:, : gram.CD_MAX_TERMS + 1]
    auto = gram.fit_bootstraps(wide_X, y, bootstrap, weights, folds, PARAMS)
    homotopy = gram.fit_bootstraps(wide_X, y, bootstrap, weights, folds, PARAMS, solver="homotopy")
    np.testing.assert_array_equal(auto.coef, homotopy.coef)
    with pytest.raises(ValueError, match="unknown solver"):
        gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS, solver="lars")


@pytest.mark.parametrize("shape", [(40, 36), (45, 51), (56, 51)])
def test_cd_replays_sklearn_when_folds_have_no_more_rows_than_terms(shape) -> None:
    # A small --top_n: every training fold has at most as many rows as terms,
    # so LassoCV solves the folds on the rows, not on the Gram.
    X, y, classes = _wide_problem(*shape, n_partners=6, effect=0.5, seed=shape[0])
    bootstrap, weights, folds = _resamples(classes, 12, shape[0] + 10)
    assert gram._rows_variant(folds.astype(np.int64), 4, X.shape[1]).all()
    ref = sk_engine.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS)
    fast = gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS)
    assert gram.solver_name(X.shape[1]) == "cd"
    np.testing.assert_allclose(fast.alpha, ref.alpha, rtol=1e-12)
    np.testing.assert_array_equal(fast.n_iter, ref.n_iter)
    np.testing.assert_allclose(fast.coef, ref.coef, rtol=0, atol=1e-10 * np.abs(ref.coef).max())
    np.testing.assert_allclose(fast.cv_mse, ref.cv_mse, rtol=1e-10)
    assert np.count_nonzero(ref.coef) > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_cd_cyclic_matches_direct_lasso_cv(seed: int) -> None:
    # The cyclic order against a direct LassoCV(selection="cyclic") call.
    X, y, classes = _problem(500, 9, 30 + seed)
    bootstrap, weights, folds = _resamples(classes, 2, 40 + seed)
    fits = gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS, solver="cd_cyclic")
    for i in range(len(bootstrap)):
        model = LassoCV(
            selection="cyclic",
            alphas=PARAMS.n_alphas,
            eps=PARAMS.eps,
            tol=PARAMS.tol,
            max_iter=PARAMS.max_iter,
            cv=sk_engine.folds_from_labels(folds[i]),
        ).fit(X, y, sample_weight=weights[i])
        assert fits.alpha[i] == pytest.approx(model.alpha_, rel=1e-12)
        assert fits.n_iter[i] == model.n_iter_
        np.testing.assert_allclose(fits.coef[i], model.coef_, rtol=0, atol=1e-10)
        assert fits.intercept[i] == pytest.approx(model.intercept_, abs=1e-10)


def test_cv_mse_intercept_r2_parity(parity) -> None:
    for y, ref, solvers in parity:
        fast = solvers["homotopy"]
        np.testing.assert_allclose(fast.cv_mse, ref.cv_mse, rtol=2e-3)
        np.testing.assert_allclose(fast.intercept, ref.intercept, rtol=0, atol=0.01 * y.std())
        np.testing.assert_allclose(fast.r2, ref.r2, rtol=0, atol=5e-3)
        np.testing.assert_array_equal(fast.bootstrap, ref.bootstrap)
        assert fast.n_iter.dtype == np.int64 and (fast.n_iter >= 0).all()


@pytest.mark.parametrize("shape", [(400, 11), (600, 4)])
def test_homotopy_exact_against_tight_sklearn(shape: tuple[int, int]) -> None:
    # With coordinate descent run to a tight tolerance, scikit-learn lands on
    # the exact path: every difference above is its default tolerance.
    X, y, classes = _problem(*shape, seed=8)
    bootstrap, weights, folds = _resamples(classes, 4, 18)
    tight = LassoParams(tol=1e-12, max_iter=100_000)
    ref = sk_engine.fit_bootstraps(X, y, bootstrap, weights, folds, tight)
    fast = gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS, solver="homotopy")
    np.testing.assert_allclose(fast.alpha, ref.alpha, rtol=1e-12)
    np.testing.assert_allclose(fast.coef, ref.coef, rtol=0, atol=1e-8 * np.abs(ref.coef).max())
    np.testing.assert_allclose(fast.cv_mse, ref.cv_mse, rtol=1e-9)
    np.testing.assert_allclose(fast.intercept, ref.intercept, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.r2, ref.r2, rtol=0, atol=1e-9)


@pytest.mark.parametrize("solver", ["cd", "homotopy"])
def test_normalised_weights_give_the_same_answers(solver: str) -> None:
    X, y, classes = _problem(500, 11, 9)
    bootstrap, weights, folds = _resamples(classes, 8, 19)
    raw = gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS, solver=solver)
    unit = gram.fit_bootstraps(
        X, y, bootstrap, weights / weights.sum(axis=1, keepdims=True), folds, PARAMS, solver=solver
    )
    np.testing.assert_allclose(unit.alpha, raw.alpha, rtol=1e-12)
    np.testing.assert_allclose(unit.coef, raw.coef, rtol=0, atol=1e-10 * np.abs(raw.coef).max())
    for name in ("intercept", "cv_mse", "r2"):
        np.testing.assert_allclose(getattr(unit, name), getattr(raw, name), rtol=1e-10)
    np.testing.assert_array_equal(unit.n_iter, raw.n_iter)


@pytest.mark.parametrize("solver", ["cd", "homotopy"])
def test_blocks_and_chunking_do_not_change_results(monkeypatch, solver: str) -> None:
    X, y, classes = _problem(300, 8, 10)
    bootstrap, weights, folds = _resamples(classes, 5, 20)
    whole = gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS, solver=solver)
    monkeypatch.setattr(gram, "_BLOCK_BYTES", 1)  # one bootstrap per block
    parts = [
        gram.fit_bootstraps(
            X, y, bootstrap[i : i + 2], weights[i : i + 2], folds[i : i + 2], PARAMS, solver=solver
        )
        for i in range(0, 5, 2)
    ]
    joined = BootstrapFits.concatenate(parts)
    for name in ("bootstrap", "coef", "intercept", "alpha", "cv_mse", "n_iter", "r2"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name))


# --------------------------------------------------------------------------- degenerate input


@pytest.mark.parametrize("solver", ["cd", "homotopy"])
def test_zero_variance_columns(solver: str) -> None:
    X, y, classes = _problem(400, 12, 11)
    X[:, 3] = 0.7
    X[:, 5] = 0.0
    bootstrap, weights, folds = _resamples(classes, 6, 21)
    ref = sk_engine.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS)
    fast = gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS, solver=solver)
    assert not fast.coef[:, [3, 5]].any()
    assert not ref.coef[:, [3, 5]].any()
    assert np.abs(_grid_distance(ref.alpha, fast.alpha)).max() <= 1
    assert np.isfinite(fast.coef).all() and np.isfinite(fast.r2).all()


@pytest.mark.parametrize("solver", ["cd", "homotopy"])
def test_constant_response(solver: str) -> None:
    X, _, classes = _problem(300, 6, 12)
    y = np.full(len(X), 0.3)
    bootstrap, weights, folds = _resamples(classes, 3, 22)
    ref = sk_engine.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS)
    fast = gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS, solver=solver)
    assert not fast.coef.any()
    np.testing.assert_allclose(fast.intercept, 0.3, rtol=1e-14)
    np.testing.assert_array_equal(fast.alpha, ref.alpha)  # scikit-learn's flat grid
    np.testing.assert_allclose(fast.coef, ref.coef, atol=1e-12)
    np.testing.assert_allclose(fast.intercept, ref.intercept, rtol=1e-12)
    assert np.all(fast.cv_mse < 1e-25) and (fast.n_iter == 0).all()
    # R^2 is 0/0 here; the exact constant prediction scores 1 (scikit-learn
    # gives 1 or 0 depending on the last bit of its weighted mean).
    np.testing.assert_array_equal(fast.r2, 1.0)


def test_empty_chunk_and_invalid_weights() -> None:
    X, y, classes = _problem(300, 6, 13)
    empty = gram.fit_bootstraps(
        X, y, np.arange(0), np.empty((0, len(y))), np.empty((0, len(y)), np.int8), PARAMS
    )
    assert empty.coef.shape == (0, X.shape[1]) and empty.alpha.shape == (0,)
    bootstrap, weights, folds = _resamples(classes, 1, 23)
    with pytest.raises(ValueError, match="finite"):
        gram.fit_bootstraps(np.where(X > 1, np.nan, X), y, bootstrap, weights, folds, PARAMS)
    weights[0, 0] = -1.0
    with pytest.raises(ValueError, match="non-negative"):
        gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS)


def test_n_iter_counts_refit_homotopy_steps() -> None:
    X, y, classes = _problem(400, 11, 14)
    bootstrap, weights, folds = _resamples(classes, 4, 24)
    fits = gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS, solver="homotopy")
    # Every non-zero coefficient but the first entered at a kink passed.
    assert (fits.n_iter >= fits.n_nonzero - 1).all() and (fits.n_iter < PARAMS.max_iter).all()
    assert not fits.max_iter_reached.any()
    capped = gram.fit_bootstraps(
        X, y, bootstrap, weights, folds, LassoParams(max_iter=1), solver="homotopy"
    )
    assert (capped.n_iter <= 1).all() and np.isfinite(capped.coef).all()
    assert capped.max_iter_reached.all()  # every fold path needs more than one step


def test_cd_sweep_cap_matches_sklearn() -> None:
    # A cap of 2 sweeps per alpha stops both before convergence, at the same point.
    X, y, classes = _problem(400, 11, 15)
    bootstrap, weights, folds = _resamples(classes, 3, 25)
    capped = LassoParams(max_iter=2)
    ref = sk_engine.fit_bootstraps(X, y, bootstrap, weights, folds, capped)
    fits = gram.fit_bootstraps(X, y, bootstrap, weights, folds, capped, solver="cd")
    np.testing.assert_array_equal(fits.n_iter, ref.n_iter)
    assert (fits.n_iter <= 2).all()
    # Not converging is flagged where scikit-learn warns (recorded by the sklearn engine).
    assert ref.max_iter_reached.all()
    np.testing.assert_array_equal(fits.max_iter_reached, ref.max_iter_reached)
    np.testing.assert_allclose(fits.alpha, ref.alpha, rtol=1e-12)
    np.testing.assert_allclose(fits.coef, ref.coef, rtol=0, atol=1e-10 * np.abs(ref.coef).max())


_SPECIALISATIONS = """
import json
import numpy as np
from tfbp_dask import resampling
from tfbp_dask.engines import LassoParams, _gram_kernels, gram

kernels = {
    name: kernel
    for name, kernel in vars(_gram_kernels).items()
    if hasattr(kernel, "signatures") and hasattr(kernel, "py_func")
}
gram.warm_up()
after_warm_up = {name: len(kernel.signatures) for name, kernel in kernels.items()}
rng = np.random.default_rng(3)
for n_terms, k in [(3, 1), (3, 6), (60, 1), (60, 4)]:
    X = rng.gamma(0.6, 1.5, size=(300, n_terms))
    y = X[:, 0] + rng.standard_normal(300)
    boot = np.arange(k)
    weights = np.stack([np.bincount(rng.integers(0, 300, 300), minlength=300)] * k)
    folds = resampling.bootstrap_test_folds(rng.integers(1, 4, size=300), boot)
    gram.fit_bootstraps(X, y, boot, weights.astype(float), folds, LassoParams())
after_fits = {name: len(kernel.signatures) for name, kernel in kernels.items()}
print(json.dumps([after_warm_up, after_fits]))
"""


def test_warm_up_leaves_one_compiled_kernel_per_function_whatever_the_fits():
    """In a fresh process, ``warm_up`` then fits of blocks of one bootstrap or many, with both
    solvers: every kernel has at most one specialisation (a second would cost seconds of
    compilation on a fresh install), and the fits compile nothing ``warm_up`` did not."""
    done = subprocess.run(
        [sys.executable, "-c", _SPECIALISATIONS], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    after_warm_up, after_fits = json.loads(done.stdout)
    assert after_fits == after_warm_up
    assert max(after_fits.values()) == 1, after_fits


# --------------------------------------------------------------------------- parity at yeast widths

# Wider than CD_MAX_TERMS, so the default solver is the homotopy: (n_genes,
# n_tfs, planted partners, effect, seed, bootstraps). The pTF x TF columns
# are correlated (mean |r| about 0.28); the planted partners give 2 to 16
# significant terms, some of them near the edge of their interval.
WIDE_SETS = [
    (1500, 61, 8, 0.3, 40, 32),
    (2000, 101, 12, 0.25, 41, 24),
    (2000, 101, 2, 1.0, 1, 20),
    (3000, 151, 16, 0.2, 42, 12),
]
CI_LEVELS = (90.0, 98.0)  # the top-N and all-data defaults


@pytest.fixture(scope="module")
def wide_parity() -> list[tuple[BootstrapFits, BootstrapFits]]:
    """(sklearn fits, default gram fits) on every wide set, same weights and folds."""
    results = []
    for n_genes, n_tfs, n_partners, effect, seed, n_bootstraps in WIDE_SETS:
        X, y, classes = _wide_problem(n_genes, n_tfs, n_partners, effect, seed)
        assert gram.solver_name(X.shape[1]) == "homotopy"
        bootstrap, weights, folds = _resamples(classes, n_bootstraps, seed + 10)
        reference = sk_engine.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS)
        fast = gram.fit_bootstraps(X, y, bootstrap, weights, folds, PARAMS)
        results.append((reference, fast))
    return results


def test_wide_chosen_alpha_parity(wide_parity) -> None:
    distance = np.concatenate([_grid_distance(ref.alpha, fast.alpha) for ref, fast in wide_parity])
    assert len(distance) == sum(entry[-1] for entry in WIDE_SETS)
    assert np.abs(distance).max() <= 1
    assert np.mean(distance == 0) >= 0.90


def test_wide_coef_parity(wide_parity) -> None:
    worst = np.concatenate(
        [
            np.abs(ref.coef - fast.coef).max(axis=1) / np.abs(ref.coef).max()
            for ref, fast in wide_parity
        ]
    )
    assert np.percentile(worst, 95) <= 0.01


@pytest.mark.parametrize("ci_level", CI_LEVELS)
def test_wide_significant_sets_identical(wide_parity, ci_level: float) -> None:
    n_significant = 0
    for ref, fast in wide_parity:
        expected = stats.significant_mask(*stats.percentile_ci(ref.coef, ci_level))
        found = stats.significant_mask(*stats.percentile_ci(fast.coef, ci_level))
        np.testing.assert_array_equal(found, expected)
        n_significant += int(expected.sum())
    assert n_significant >= 30  # not a comparison of empty sets


# --------------------------------------------------------------------------- any CPU, same bits


def test_same_bytes_on_a_cpu_without_vector_extensions(tmp_path) -> None:
    # The host build against kernels compiled for a generic x86-64 CPU, with
    # numpy's CPU-dispatched loops and OpenBLAS's kernel also set to an old
    # CPU's: the engine's numbers must not depend on the worker's CPU.
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    script = tmp_path / "fit.py"
    script.write_text(FIT_SCRIPT)
    generic = {
        "NUMBA_CPU_NAME": "generic",
        "NUMBA_CACHE_DIR": str(tmp_path / "numba_cache"),
        "NPY_DISABLE_CPU_FEATURES": " ".join(f for f in __cpu_dispatch__ if __cpu_features__[f]),
        "OPENBLAS_CORETYPE": "Nehalem",
    }
    results = {}
    for name, extra in (("host", {}), ("generic", generic)):
        env = {**os.environ, **extra}
        subprocess.run(
            [sys.executable, str(script), str(tmp_path / f"{name}.npz")],
            env=env,
            check=True,
            timeout=300,
        )
        results[name] = np.load(tmp_path / f"{name}.npz")
    host, other = results["host"], results["generic"]
    assert sorted(host.files) == sorted(other.files) and len(host.files) == 12
    for name in host.files:
        assert host[name].tobytes() == other[name].tobytes(), name
    assert np.count_nonzero(host["homotopy_coef"]) > 10 and np.count_nonzero(host["cd_coef"]) > 10


def test_replay_is_said_to_hold_only_for_the_mirrored_release() -> None:
    from importlib.metadata import version

    from tfbp_dask.engines import CD_REPLAY_SKLEARN, solver_note

    assert solver_note("gram_cd", f"{CD_REPLAY_SKLEARN}.0") is None
    assert solver_note("gram_cd", f"{CD_REPLAY_SKLEARN}.7rc1") is None
    for other in ("1.10.0", "1.8.2", "2.9.0"):
        assert f"scikit-learn {other} is installed" in solver_note("gram_cd", other)
    assert solver_note("gram_homotopy", "1.10.0") is None
    assert solver_note("sklearn_cd", "1.10.0") is None
    # The replay is tested above against the scikit-learn installed here.
    assert version("scikit-learn").startswith(f"{CD_REPLAY_SKLEARN}.")


_LIGHT_BLAS_CHECK = """
import json, sys
from tfbp_dask.engines import gram
gram.warm_up()
names = ("scipy.linalg", "numpy.f2py", "scipy.linalg.cython_blas")
loaded = {name: name in sys.modules for name in names}
import numba
import numpy as np

@numba.njit
def product(a, b):
    return np.dot(a, b)

a = np.arange(12.0).reshape(3, 4)
blas = bool(np.array_equal(product(a, a.T), a @ a.T))
import scipy.linalg.cython_blas
dgemm = "dgemm" in scipy.linalg.cython_blas.__pyx_capi__
print(json.dumps({"loaded": loaded, "blas": blas, "dgemm": dgemm}))
"""


def test_loading_the_kernels_skips_scipy_linalg_and_leaves_blas_usable() -> None:
    # numba checks for BLAS with the first kernel; the engine lets it do so without importing
    # scipy.linalg's package (0.17 s). numba's np.dot and scipy's BLAS table work afterwards.
    done = subprocess.run(
        [sys.executable, "-c", _LIGHT_BLAS_CHECK],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["loaded"] == {
        "scipy.linalg": False,
        "numpy.f2py": False,
        "scipy.linalg.cython_blas": False,
    }
    assert report["blas"] and report["dgemm"]
