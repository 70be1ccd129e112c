"""Fast engine: weighted LassoCV from fold sufficient statistics, compiled path solvers.

Same objective, grid, folds and selection rule as the ``sklearn`` engine (SPEC §6):

* alpha grid: ``geomspace(alpha_max, eps * alpha_max, n_alphas)`` with
  ``alpha_max = max_j |sum_i w_i (x_ij - xbar_j)(y_i - ybar)| / sum_i w_i``
  (weighted means over all rows), as scikit-learn's ``_alpha_grid``;
* for every test fold, the lasso with intercept is fitted on the other rows
  with their bootstrap weights, minimising
  ``1 / (2 sum w) * sum w (y - b - x' beta)^2 + alpha ||beta||_1``
  (scikit-learn rescales the weights to sum to the number of rows and scales
  alpha by it: the same problem); its weighted MSE on the test fold is
  recorded at every grid alpha;
* the chosen alpha is the first minimum of the unweighted mean over folds of
  those MSEs; the model is refitted on all rows with all weights at it.

How it differs in method:

* rows are touched once per bootstrap: for each test fold the weighted
  "augmented Gram" of ``[x, 1, y]`` over its rows with non-zero weight (one
  BLAS ``syrk`` per fold, on a compiled gather of the scaled rows); the training
  statistics of a fold are the total minus the fold, and centring on the
  weighted means is done algebraically. Columns are first shifted by their
  unweighted means, so the subtractions do not cancel catastrophically;
* test MSEs come from quadratic forms of the test statistics;
* each path is solved by one of two compiled (numba) solvers on the Gram:

  ``cd`` (designs of at most ``CD_MAX_TERMS`` terms)
      scikit-learn's own coordinate descent replayed: random coordinate order
      from the same generator seeded as ``LassoCV(selection="random",
      random_state=bootstrap)`` seeds it, gap-safe screening, the same
      duality-gap stopping rule at ``params.tol`` and ``params.max_iter``,
      warm starts along the grid, the refit from zero; a fold whose training
      rows (zero weights included) are no more than the terms is replayed as
      scikit-learn's solver on rows, which it uses then. Results equal the
      ``sklearn`` engine's to rounding (about 1e-15 relative), including the
      chosen alpha and ``n_iter``, for scikit-learn ``CD_REPLAY_SKLEARN``.x
      (``engines.solver_note`` says so at run time for other releases). On
      few terms the CV curve is flat near its minimum, and the tolerance of
      coordinate descent alone can move the argmin by a grid point or two;
      replaying it keeps those picks.
  ``homotopy`` (wider designs)
      the exact piecewise-linear lasso path (LARS-lasso homotopy), two to four
      times cheaper than coordinate descent there. Coefficients are exact up
      to rounding, so they differ from the ``sklearn`` engine's by that
      engine's tolerance; the chosen alpha is the same grid point in 97-100 %
      of bootstraps at yeast scale (``docs/performance.md``). ``params.tol``
      is not used; ``params.max_iter`` caps the steps of every path.

``n_iter`` is, for ``cd``, the number of sweeps of the refit (scikit-learn's
``n_iter_``); for ``homotopy``, the number of steps (kinks of the path, where a
term enters or leaves) of the refit path from ``alpha_max`` down to the chosen
alpha, about as many as there are terms, equal to ``max_iter`` only if the cap
cut the path short.

Edge cases: a column constant on a problem's weighted rows keeps coefficient
0 there (as in scikit-learn); with ``homotopy``, a column collinear with the
active columns (to 1e-10) stays out of the path, where scikit-learn may share
the weight between the copies (same objective, the solution is not unique); a
test fold holding rows but no weight is left out of the mean MSE
(scikit-learn raises); for a constant y, R^2 (0/0) is reported as 1, the score
of the exact prediction.
"""

from __future__ import annotations

import decimal
import functools

import numpy as np

from ._gram_kernels import (
    SOLVER_CD,
    SOLVER_CD_RANDOM,
    SOLVER_HOMOTOPY,
    _gather_scaled,
    _gram,
    _solve_block,
)
from ._types import BootstrapFits, LassoParams
from .solver import CD_MAX_TERMS, solver_name

# Statistics of a block of bootstraps are held in memory at once: at most
# about this many bytes (k * n_folds * (p + 2)^2 doubles).
_BLOCK_BYTES = 16 * 2**20

# Designs of at most this many terms are solved by the coordinate-descent
# replay, wider ones by the homotopy. At 6000 rows the replay costs 0.8 ms
# per bootstrap at 10 terms, 2 ms at 25 and 3.3 ms at 50 (homotopy: 0.2, 0.4
# and 0.9 ms; one LassoCV: 45-50 ms).
SOLVERS = ("auto", "cd", "homotopy")


def fit_bootstraps(
    X: np.ndarray,
    y: np.ndarray,
    bootstrap: np.ndarray,
    weights: np.ndarray,
    test_folds: np.ndarray,
    params: LassoParams,
    solver: str = "auto",
) -> BootstrapFits:
    """Fit a chunk of bootstraps, each a weighted ``LassoCV`` (see module docstring).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_terms)
    y : ndarray of shape (n_samples,)
    bootstrap : ndarray of shape (k,)
        Bootstrap indices; index b seeds the coordinate order of ``cd``.
    weights : ndarray of shape (k, n_samples)
        Non-negative bootstrap sample weights, row i for ``bootstrap[i]``.
    test_folds : ndarray of shape (k, n_samples)
        Test-fold label (0, 1, ...) of every row, row i for ``bootstrap[i]``.
    params : LassoParams
    solver : {"auto", "cd", "homotopy"}
        Path solver; ``"auto"`` picks ``cd`` for at most ``CD_MAX_TERMS``
        terms, else ``homotopy``.

    Returns
    -------
    BootstrapFits
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    # C-contiguous rows: one compiled signature, contiguous per-bootstrap rows.
    weights = np.ascontiguousarray(np.atleast_2d(weights), dtype=np.float64)
    test_folds = np.ascontiguousarray(np.atleast_2d(test_folds), dtype=np.int64)
    bootstrap = np.asarray(bootstrap, dtype=np.int64)
    n_samples, n_terms = X.shape
    k = len(bootstrap)
    if weights.shape != (k, n_samples) or test_folds.shape != (k, n_samples):
        raise ValueError("weights and test_folds must have shape (len(bootstrap), n_samples)")
    if not (np.isfinite(X).all() and np.isfinite(y).all() and np.isfinite(weights).all()):
        raise ValueError("X, y and weights must be finite")
    if np.any(weights < 0):
        raise ValueError("bootstrap weights must be non-negative")
    if np.any(test_folds < 0):
        raise ValueError("test-fold labels must be non-negative")

    coef = np.empty((k, n_terms))
    intercept = np.empty(k)
    alpha = np.empty(k)
    cv_mse = np.empty(k)
    n_iter = np.empty(k, dtype=np.int64)
    capped = np.empty(k, dtype=bool)
    r2 = np.empty(k)
    if k == 0:
        return BootstrapFits(bootstrap, coef, intercept, alpha, cv_mse, n_iter, r2, capped)

    # Shift columns by their unweighted means: every bootstrap's weighted
    # means are then within O(sd / sqrt(n)) of zero, so Grams formed by
    # subtraction and centred algebraically keep full relative precision.
    x_shift = X.mean(axis=0)
    y_shift = y.mean()
    augmented = np.empty((n_samples, n_terms + 2))
    np.subtract(X, x_shift, out=augmented[:, :n_terms])
    augmented[:, n_terms] = 1.0
    augmented[:, n_terms + 1] = y - y_shift

    code = _solver_code(solver, n_terms)
    n_folds = int(test_folds.max()) + 1
    block = max(1, _BLOCK_BYTES // (8 * n_folds * (n_terms + 2) ** 2))
    for start in range(0, k, block):
        rows = slice(start, min(start + block, k))
        stats = _fold_statistics(augmented, weights[rows], test_folds[rows], n_folds)
        grids = _alpha_grids(stats.sum(axis=1), params)
        best = np.empty(rows.stop - start, dtype=np.int64)
        xbar = np.empty((rows.stop - start, n_terms))
        ybar = np.empty(rows.stop - start)
        _solve_block(
            stats,
            grids,
            int(params.max_iter),
            float(params.tol),
            code,
            _cd_seeds(bootstrap[rows], params.n_alphas, code),
            _rows_variant(test_folds[rows], n_folds, n_terms),
            coef[rows],
            best,
            cv_mse[rows],
            n_iter[rows],
            capped[rows],
            r2[rows],
            xbar,
            ybar,
        )
        alpha[rows] = grids[np.arange(len(best)), best]
        # scikit-learn's intercept: weighted mean of y minus weighted column means @ coef.
        intercept[rows] = (y_shift + ybar) - np.einsum("kp,kp->k", x_shift + xbar, coef[rows])
    return BootstrapFits(
        bootstrap=bootstrap,
        coef=coef,
        intercept=intercept,
        alpha=alpha,
        cv_mse=cv_mse,
        n_iter=n_iter,
        r2=r2,
        max_iter_reached=capped,
    )


def warm_up() -> None:
    """Load every compiled kernel (compile it, on a cache miss) by fitting two tiny problems.

    One design narrow enough for ``cd``, one wide enough for ``homotopy``,
    with the argument types of real fits, so that the first real chunk finds
    every specialisation ready.
    """
    stream = np.random.RandomState(0)
    for n_terms in (2, CD_MAX_TERMS + 1):
        n_samples = 4 * (n_terms + 2)
        X = stream.standard_normal((n_samples, n_terms))
        y = X[:, 0] + stream.standard_normal(n_samples)
        weights = np.bincount(stream.randint(0, n_samples, n_samples), minlength=n_samples)
        folds = np.arange(n_samples) % 4
        fit_bootstraps(X, y, np.zeros(1, dtype=np.int64), weights[None], folds[None], LassoParams())


def _fold_statistics(
    augmented: np.ndarray, weights: np.ndarray, test_folds: np.ndarray, n_folds: int
) -> np.ndarray:
    """Weighted augmented Gram of the test rows of every fold of every bootstrap.

    Parameters
    ----------
    augmented : ndarray of shape (n_samples, p + 2)
        Columns ``[x - x_shift, 1, y - y_shift]``.
    weights : ndarray of shape (k, n_samples)
    test_folds : ndarray of shape (k, n_samples)
    n_folds : int

    Returns
    -------
    ndarray of shape (k, n_folds, p + 2, p + 2)
        ``H[b, f] = sum over rows i of fold f of w_bi a_i a_i'``.
    """
    n_columns = augmented.shape[1]
    stats = np.empty((len(weights), n_folds, n_columns, n_columns))
    scaled = np.empty_like(augmented)
    for b in range(len(weights)):
        # Only rows drawn at least once contribute; each fold's rows are one
        # contiguous block of the scaled copy.
        counts = _gather_scaled(augmented, weights[b], test_folds[b], n_folds, scaled)
        end = 0
        for f in range(n_folds):
            part = scaled[end : end + counts[f]]
            end += counts[f]
            _gram(part, stats[b, f])  # not BLAS: the same bits on every CPU
    return stats


def _alpha_grids(totals: np.ndarray, params: LassoParams) -> np.ndarray:
    """scikit-learn's alpha grid of every bootstrap from its total statistics.

    Parameters
    ----------
    totals : ndarray of shape (k, p + 2, p + 2)
        Augmented Gram over all rows, per bootstrap.
    params : LassoParams

    Returns
    -------
    ndarray of shape (k, n_alphas)
        Decreasing grids; a bootstrap whose ``alpha_max`` is at rounding level
        gets the constant grid scikit-learn uses then.
    """
    p = totals.shape[1] - 2
    weight = totals[:, p, p]
    xbar = totals[:, :p, p] / weight[:, None]
    ybar = totals[:, p, p + 1] / weight
    # sum w (x - xbar)(y - ybar) / sum w, centred algebraically.
    xy = totals[:, :p, p + 1] / weight[:, None] - xbar * ybar[:, None]
    alpha_max = np.abs(xy).max(axis=1) if p > 0 else np.zeros(len(weight))
    resolution = np.finfo(np.float64).resolution
    regular = alpha_max > resolution
    start = np.where(regular, alpha_max, 1.0)
    grids = start[:, None] * _grid_ratios(params.eps, params.n_alphas)
    grids[~regular] = resolution
    # geomspace along axis 1 is Fortran-ordered unless k == 1: one layout, one compiled kernel.
    return np.ascontiguousarray(grids)


@functools.lru_cache(maxsize=8)
def _grid_ratios(eps: float, n_alphas: int) -> np.ndarray:
    """``eps ** (i / (n_alphas - 1))`` for i = 0 .. n_alphas - 1, correctly rounded.

    scikit-learn's grid is ``np.geomspace(alpha_max, eps * alpha_max, n)``,
    whose ``log10`` and ``power`` numpy evaluates with CPU-specific vector code
    (AVX-512 and AVX2 machines differ in the last bit). Decimal arithmetic at 40
    digits gives every machine the same ratios; the grid (within an ulp or two
    of scikit-learn's, with the same first and last points) is then one
    multiplication each.
    """
    if n_alphas == 1:
        return np.ones(1)
    with decimal.localcontext() as context:
        context.prec = 40
        log_eps = decimal.Decimal(eps).ln()
        ratios = [float((log_eps * i / (n_alphas - 1)).exp()) for i in range(n_alphas)]
    ratios[0], ratios[-1] = 1.0, eps
    return np.array(ratios)


def _cd_seeds(bootstrap: np.ndarray, n_alphas: int, code: int) -> np.ndarray:
    """Seeds of the random coordinate order, per bootstrap and grid alpha.

    ``LassoCV(random_state=b)`` hands ``b`` to every path it computes (each
    fold, then the refit); each path makes a fresh ``RandomState(b)`` and
    draws one ``randint(0, 2**31 - 1)`` per alpha to seed that alpha's
    coordinate descent. So every fold path uses the same seeds, and the
    refit the first one.
    """
    seeds = np.zeros((len(bootstrap), n_alphas), dtype=np.int64)
    if code == SOLVER_CD_RANDOM:
        for i, b in enumerate(bootstrap):
            seeds[i] = np.random.RandomState(int(b)).randint(0, 2**31 - 1, size=n_alphas)
    return seeds


def _rows_variant(test_folds: np.ndarray, n_folds: int, n_terms: int) -> np.ndarray:
    """Per bootstrap and fold: does scikit-learn solve that fold on rows, not on the Gram?

    ``LassoCV`` precomputes the Gram of a fold's training rows (``precompute=
    "auto"``) only if they outnumber the terms; rows of zero weight count.
    """
    sizes = np.stack([np.count_nonzero(test_folds == f, axis=1) for f in range(n_folds)], axis=1)
    return (test_folds.shape[1] - sizes) <= n_terms


def _solver_code(solver: str, n_terms: int) -> int:
    """Kernel code of a solver name (``"cd_cyclic"``: cyclic order, for tests)."""
    codes = {"cd": SOLVER_CD_RANDOM, "cd_cyclic": SOLVER_CD, "homotopy": SOLVER_HOMOTOPY}
    name = solver_name(n_terms, solver)
    if name not in codes:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    return codes[name]
