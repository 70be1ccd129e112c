"""Reference engine: one scikit-learn ``LassoCV`` per bootstrap (SPEC §6)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LassoCV
from sklearn.metrics import r2_score

from ._types import BootstrapFits, LassoParams


def folds_from_labels(test_fold: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Turn a per-row test-fold label into scikit-learn's ``(train, test)`` pairs.

    Parameters
    ----------
    test_fold : ndarray of shape (n_samples,)
        Fold number (0, 1, …) in which each row is a test row.
    """
    labels = np.unique(test_fold)
    return [
        (np.flatnonzero(test_fold != label), np.flatnonzero(test_fold == label)) for label in labels
    ]


def fit_one(
    X: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray | None,
    test_fold: np.ndarray,
    random_state: int,
    params: LassoParams,
) -> tuple[LassoCV, bool]:
    """Fit the reference ``LassoCV`` of one bootstrap.

    Returns
    -------
    model : LassoCV
    converged : bool
        False if coordinate descent stopped at ``params.max_iter`` sweeps
        without converging at some alpha of a fold path or of the refit
        (scikit-learn's ``ConvergenceWarning``, recorded here instead).
    """
    model = LassoCV(
        fit_intercept=True,
        selection="random",
        alphas=params.n_alphas,
        eps=params.eps,
        tol=params.tol,
        max_iter=params.max_iter,
        random_state=random_state,
        cv=folds_from_labels(test_fold),
        n_jobs=1,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X, y, sample_weight=sample_weight)
    converged = True
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            converged = False
        else:  # anything else is not ours to swallow
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return model, converged


def fit_bootstraps(
    X: np.ndarray,
    y: np.ndarray,
    bootstrap: np.ndarray,
    weights: np.ndarray,
    test_folds: np.ndarray,
    params: LassoParams,
) -> BootstrapFits:
    """Fit a chunk of bootstraps, one ``LassoCV`` each.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_terms)
    y : ndarray of shape (n_samples,)
    bootstrap : ndarray of shape (k,)
        Bootstrap indices; index b seeds the coordinate-descent order.
    weights : ndarray of shape (k, n_samples)
        Bootstrap sample weights, row i for ``bootstrap[i]``.
    test_folds : ndarray of shape (k, n_samples)
        Test-fold label of every row, row i for ``bootstrap[i]``.
    params : LassoParams
    """
    k, n_terms = len(bootstrap), X.shape[1]
    coef = np.empty((k, n_terms))
    intercept = np.empty(k)
    alpha = np.empty(k)
    cv_mse = np.empty(k)
    n_iter = np.empty(k, dtype=np.int64)
    r2 = np.empty(k)
    capped = np.empty(k, dtype=bool)
    for i, b in enumerate(bootstrap):
        model, converged = fit_one(X, y, weights[i], test_folds[i], int(b), params)
        capped[i] = not converged
        coef[i] = model.coef_
        intercept[i] = model.intercept_
        alpha[i] = model.alpha_
        cv_mse[i] = model.mse_path_.mean(axis=1).min()
        n_iter[i] = model.n_iter_
        r2[i] = r2_score(y, model.predict(X), sample_weight=weights[i])
    return BootstrapFits(
        bootstrap=np.asarray(bootstrap, dtype=np.int64),
        coef=coef,
        intercept=intercept,
        alpha=alpha,
        cv_mse=cv_mse,
        n_iter=n_iter,
        r2=r2,
        max_iter_reached=capped,
    )
