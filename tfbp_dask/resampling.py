"""Stratification classes, cross-validation folds and bootstrap draws (SPEC §4–§5).

Everything random is drawn here, on the client, from the seed; workers only
ever receive the resulting weights and fold labels.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.model_selection import StratifiedKFold

N_FOLDS = 4

logger = logging.getLogger(__name__)


def stratification_classes(ptf_binding: np.ndarray, bins: Sequence[float]) -> np.ndarray:
    """Class of every row from the rank of its pTF binding.

    Rows are ranked by descending binding (1 = strongest, ties take the minimum
    rank); class k (1-based) holds the ranks in ``(bins[k-1], bins[k]]``.

    Parameters
    ----------
    ptf_binding : ndarray of shape (n_samples,)
    bins : sequence of float
        Strictly increasing edges starting at 0 and ending at ``inf``.

    Returns
    -------
    ndarray of shape (n_samples,) of int
    """
    ranks = rankdata(-np.asarray(ptf_binding, dtype=float), method="min")
    classes = np.searchsorted(np.asarray(bins, dtype=float), ranks, side="left")
    counts = np.bincount(classes, minlength=len(bins))[1:]
    if np.any((counts > 0) & (counts < N_FOLDS)):
        logger.debug("stratification classes with fewer than %d rows: sizes %s", N_FOLDS, counts)
    return classes


def cv_fold_labels(classes: np.ndarray, random_state: int) -> np.ndarray:
    """Test-fold label (0..3) of each row under ``StratifiedKFold(4, shuffle, random_state)``."""
    labels = np.empty(len(classes), dtype=np.int8)
    splitter = StratifiedKFold(n_splits=N_FOLDS, shuffle=True, random_state=random_state)
    with warnings.catch_warnings():
        # The top classes hold few genes by design (SPEC §4 allows fewer than 4);
        # scikit-learn warns about each such split.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, test) in enumerate(splitter.split(np.zeros(len(classes)), classes)):
            labels[test] = fold
    return labels


def bootstrap_test_folds(classes: np.ndarray, bootstraps: np.ndarray) -> np.ndarray:
    """Fold labels for every bootstrap b (seeded by b), shape (len(bootstraps), n)."""
    return np.stack([cv_fold_labels(classes, int(b)) for b in bootstraps])


def bootstrap_draws(n_samples: int, n_bootstraps: int, seed: int) -> np.ndarray:
    """Row positions drawn with replacement, one row per bootstrap.

    One ``RandomState(seed)`` stream for the stage, drawn in bootstrap order:
    exactly what ``sklearn.utils.resample(..., replace=True)`` draws.

    Returns
    -------
    ndarray of shape (n_bootstraps, n_samples) of int
    """
    stream = np.random.RandomState(seed)
    draws = np.empty((n_bootstraps, n_samples), dtype=np.int64)
    for b in range(n_bootstraps):
        draws[b] = stream.randint(0, n_samples, size=n_samples)
    return draws


def draws_to_weights(draws: np.ndarray, normalize: bool = False) -> np.ndarray:
    """Bootstrap weights: how many times each row was drawn (optionally summing to 1).

    Parameters
    ----------
    draws : ndarray of shape (n_bootstraps, n_samples)

    Returns
    -------
    ndarray of shape (n_bootstraps, n_samples) of float
    """
    n_bootstraps, n_samples = draws.shape
    weights = np.zeros((n_bootstraps, n_samples))
    for b in range(n_bootstraps):
        weights[b] = np.bincount(draws[b], minlength=n_samples)
    if normalize:
        weights /= weights.sum(axis=1, keepdims=True)
    return weights
