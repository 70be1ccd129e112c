"""Property-based parity: the ``gram`` engine's solvers against ``LassoCV`` on random problems.

Each case draws a small weighted lasso problem (rows, terms, column scales and
offsets over several orders of magnitude, a sparse or dense truth, noise from
none to dominant, correlated columns, 3 to 5 folds) and bootstrap draws of it,
then fits it with the ``sklearn`` engine (one ``LassoCV`` per bootstrap) and
with ``gram``:

* ``cd`` replays scikit-learn's coordinate descent, so chosen alpha, sweep
  count and coefficients must agree to rounding;
* ``homotopy`` solves the path exactly, so its coefficients must solve the
  lasso at the alpha it chose: checked through the optimality (KKT)
  conditions, computed here with numpy from the rows and weights,
  independently of any solver.

Derandomised (same cases every run) unless ``TFBP_FUZZ_SCALE`` is set.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FUZZ_SETTINGS, fuzz_examples
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tfbp_dask import resampling
from tfbp_dask.engines import LassoParams, gram
from tfbp_dask.engines import sklearn as sk_engine

PARAMS = LassoParams()


@st.composite
def problems(draw: st.DrawFn) -> dict:
    n = draw(st.integers(40, 260))
    p = draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    mixing = np.eye(p) + draw(st.floats(0, 0.9)) * rng.normal(size=(p, p))
    X = rng.normal(size=(n, p)) @ mixing
    X = X * 10.0 ** rng.uniform(-2, 2, size=p) + 10.0 ** rng.uniform(-1, 2, size=p)
    truth = rng.normal(size=p) * (rng.uniform(size=p) < draw(st.floats(0.2, 1.0)))
    signal = (X - X.mean(axis=0)) / X.std(axis=0) @ truth
    noise = draw(st.sampled_from([0.0, 0.05, 0.5, 3.0]))
    y = 5.0 + signal + noise * rng.normal(size=n)
    n_folds = draw(st.integers(3, 5))
    n_boot = 2
    draws = resampling.bootstrap_draws(n, n_boot, seed % 2**32)
    weights = resampling.draws_to_weights(draws)
    folds = np.stack([rng.permutation(np.arange(n) % n_folds) for _ in range(n_boot)])
    bootstrap = np.array(draw(st.lists(st.integers(0, 10_000), min_size=2, max_size=2)))
    return {"X": X, "y": y, "bootstrap": bootstrap, "weights": weights, "folds": folds}


def _usable(problem: dict) -> bool:
    """Every fold must hold test weight (scikit-learn divides by it)."""
    weights, folds = problem["weights"], problem["folds"]
    for w, f in zip(weights, folds, strict=True):
        for label in np.unique(f):
            if w[f == label].sum() == 0:
                return False
    return True


@settings(max_examples=fuzz_examples(60), **FUZZ_SETTINGS)
@given(problem=problems())
def test_cd_replays_lasso_cv(problem: dict) -> None:
    assume(_usable(problem))
    args = (problem["X"], problem["y"], problem["bootstrap"], problem["weights"], problem["folds"])
    ref = sk_engine.fit_bootstraps(*args, PARAMS)
    cd = gram.fit_bootstraps(*args, PARAMS, solver="cd")
    scale = max(np.abs(ref.coef).max(), 1e-300)
    np.testing.assert_allclose(cd.alpha, ref.alpha, rtol=1e-10)
    np.testing.assert_array_equal(cd.n_iter, ref.n_iter)
    np.testing.assert_allclose(cd.coef, ref.coef, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(cd.intercept, ref.intercept, rtol=1e-8, atol=1e-8 * scale)


@settings(max_examples=fuzz_examples(100), **FUZZ_SETTINGS)
@given(problem=problems())
def test_homotopy_solves_the_lasso_it_chose(problem: dict) -> None:
    assume(_usable(problem))
    X, y = problem["X"], problem["y"]
    args = (X, y, problem["bootstrap"], problem["weights"], problem["folds"])
    fits = gram.fit_bootstraps(*args, PARAMS, solver="homotopy")
    for i, w in enumerate(problem["weights"]):
        # KKT conditions of 1/(2 sum w) sum w (y - b - x'beta)^2 + alpha |beta|_1.
        w = w / w.sum()
        xbar, ybar = w @ X, w @ y
        residual = (y - ybar) - (X - xbar) @ fits.coef[i]
        gradient = (X - xbar).T @ (w * residual)
        alpha = fits.alpha[i]
        tolerance = 1e-7 * max(alpha, np.abs((X - xbar).T @ (w * (y - ybar))).max())
        active = fits.coef[i] != 0
        assert np.all(np.abs(gradient[~active]) <= alpha + tolerance)
        np.testing.assert_allclose(
            gradient[active], alpha * np.sign(fits.coef[i][active]), rtol=0, atol=tolerance
        )
        assert fits.intercept[i] == pytest.approx(ybar - xbar @ fits.coef[i], rel=1e-9, abs=1e-9)
