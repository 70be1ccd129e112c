"""Records shared by every engine: the fit parameters and a chunk's results."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LassoParams:
    """The settings of one weighted LassoCV fit (SPEC §6).

    Attributes
    ----------
    max_iter : int
        ``--max_iter``: the cap of every path of a fit. For coordinate descent
        (the ``sklearn`` engine, ``gram``'s ``cd``) sweeps per grid alpha; for
        ``gram``'s ``homotopy`` steps (changes of the active set) per path.
    tol : float
        Convergence tolerance of the coordinate descent.
    eps : float
        Ratio ``alpha_min / alpha_max`` of the alpha grid.
    n_alphas : int
        Number of grid points, log-spaced from ``alpha_max`` down.
    """

    max_iter: int = 10000
    tol: float = 1e-4
    eps: float = 1e-3
    n_alphas: int = 100


@dataclass
class BootstrapFits:
    """What a chunk of bootstrap fits returns (plain arrays, small).

    Attributes
    ----------
    bootstrap : ndarray of shape (k,)
        Bootstrap indices of the chunk, ascending.
    coef : ndarray of shape (k, n_terms)
    intercept : ndarray of shape (k,)
    alpha : ndarray of shape (k,)
        The chosen ``alpha_`` per bootstrap.
    cv_mse : ndarray of shape (k,)
        Mean over folds of the weighted test MSE at the chosen alpha.
    n_iter : ndarray of shape (k,)
        Iterations of the final refit.
    r2 : ndarray of shape (k,)
        Weighted in-sample R² of the refit, weights = the bootstrap weights.
    max_iter_reached : ndarray of shape (k,) of bool
        ``max_iter`` stopped some path of the fit (a fold path or the refit)
        early: coordinate descent that did not converge at an alpha, or a
        homotopy path cut short.
    cpu_seconds : float
        CPU time of the fits themselves (the engine's calls, in the thread that made
        them), summed over the chunks; bootstraps loaded from checkpoints count 0.
    """

    bootstrap: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    alpha: np.ndarray
    cv_mse: np.ndarray
    n_iter: np.ndarray
    r2: np.ndarray
    max_iter_reached: np.ndarray
    cpu_seconds: float = 0.0

    @classmethod
    def concatenate(cls, parts: list[BootstrapFits]) -> BootstrapFits:
        """Join chunks, ordered by bootstrap index whatever order they came in."""
        merged = {name: np.concatenate([getattr(part, name) for part in parts]) for name in _FIELDS}
        order = np.argsort(merged["bootstrap"], kind="stable")
        return cls(
            **{name: merged[name][order] for name in _FIELDS},
            cpu_seconds=float(sum(part.cpu_seconds for part in parts)),
        )

    @property
    def n_nonzero(self) -> np.ndarray:
        """Number of non-zero coefficients per bootstrap."""
        return np.count_nonzero(self.coef, axis=1)


_FIELDS = (
    "bootstrap",
    "coef",
    "intercept",
    "alpha",
    "cv_mse",
    "n_iter",
    "r2",
    "max_iter_reached",
)
