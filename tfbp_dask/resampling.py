"""Stratification classes, cross-validation folds and bootstrap draws (SPEC §4–§5).

Everything random is drawn here from the seed: a stage's draws by one task
on the cluster (``SeededDraws`` is their recipe; the fits receive their
chunk's rows of them, compact row positions turned into weights there), and
the workers rebuild the fold labels from the classes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
    ranks = rank(-np.asarray(ptf_binding, dtype=float), ties="min")
    classes = np.searchsorted(np.asarray(bins, dtype=float), ranks, side="left")
    counts = np.bincount(classes, minlength=len(bins))[1:]
    if np.any((counts > 0) & (counts < N_FOLDS)):
        logger.debug("stratification classes with fewer than %d rows: sizes %s", N_FOLDS, counts)
    return classes


def rank(values: np.ndarray, ties: str = "min") -> np.ndarray:
    """Ranks from 1 of finite values, as ``scipy.stats.rankdata(values, method=ties)``.

    Parameters
    ----------
    values : array-like of shape (n,)
        Finite numbers.
    ties : {"min", "average"}
        Tied values share the lowest rank of their group (int64), or the mean
        of the group's ranks (float64).

    Returns
    -------
    ndarray of shape (n,)
    """
    values = np.asarray(values, dtype=float).ravel()
    if np.isnan(values).any():
        raise ValueError("cannot rank NaN")
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1  # group of equal values of each sorted position
    first = np.flatnonzero(starts)  # sorted position where each group starts
    if ties == "min":
        by_position = first[group] + 1
    elif ties == "average":
        last = np.r_[first[1:], len(values)]  # one past each group's end
        by_position = 0.5 * (first + last + 1)[group]
    else:
        raise ValueError(f"ties must be 'min' or 'average', got {ties!r}")
    ranks = np.empty(len(values), dtype=by_position.dtype)
    ranks[order] = by_position
    return ranks


def stratification_problem(classes: np.ndarray, bins: Sequence[float]) -> str | None:
    """Why stratified ``N_FOLDS``-fold CV cannot split rows of these classes, or None.

    ``StratifiedKFold`` fails when every class holds fewer rows than folds
    (with at least one such class it only warns); the message names the
    largest bin and its count.

    Parameters
    ----------
    classes : ndarray of shape (n_samples,)
        From ``stratification_classes(..., bins)``.
    bins : sequence of float
    """
    counts = np.bincount(np.asarray(classes, dtype=np.int64), minlength=len(bins))[1:]
    if len(classes) == 0 or counts.max() >= N_FOLDS:
        return None
    k = int(np.argmax(counts))
    return (
        f"every bin holds fewer than {N_FOLDS} rows (the largest, ranks "
        f"({bins[k]:g}, {bins[k + 1]:g}], holds {counts[k]}); stratified {N_FOLDS}-fold "
        f"cross-validation needs a bin of at least {N_FOLDS}"
    )


class _StratifiedPlan:
    """What ``StratifiedKFold(4, shuffle=True)`` derives from the classes alone.

    scikit-learn's splitter re-validates and re-encodes the classes on every
    call (about 1 ms at 6000 rows); here that is done once per stage and each
    bootstrap only replays the seeded shuffles. The result is the same fold
    assignment, row for row (tested against ``StratifiedKFold``).
    """

    def __init__(self, classes: np.ndarray) -> None:
        classes = np.asarray(classes)
        # Classes are numbered in order of first appearance, as scikit-learn does.
        _, first_index, inverse = np.unique(classes, return_index=True, return_inverse=True)
        _, class_rank = np.unique(first_index, return_inverse=True)
        encoded = class_rank[inverse]
        n_classes = len(first_index)
        counts = np.bincount(encoded, minlength=n_classes)
        if np.all(counts < N_FOLDS):
            raise ValueError(
                f"stratified {N_FOLDS}-fold CV needs a class with at least {N_FOLDS} rows; "
                f"class sizes are {counts.tolist()}"
            )
        ordered = np.sort(encoded)
        allocation = np.stack(
            [np.bincount(ordered[i::N_FOLDS], minlength=n_classes) for i in range(N_FOLDS)]
        )
        self.n_rows = len(classes)
        self.members = [np.flatnonzero(encoded == k) for k in range(n_classes)]
        self.unshuffled = [
            np.repeat(np.arange(N_FOLDS), allocation[:, k]) for k in range(n_classes)
        ]

    def labels(self, random_state: int, stream: np.random.RandomState | None = None) -> np.ndarray:
        """The labels under ``StratifiedKFold(4, shuffle=True, random_state=random_state)``.

        ``stream``, if given, is re-seeded and used: the same numbers as a new
        ``RandomState(random_state)``, without the 70 us of making one (most of a
        bootstrap's labels).
        """
        if stream is None:
            stream = np.random.RandomState(random_state)
        else:
            stream.seed(random_state)
        labels = np.empty(self.n_rows, dtype=np.int8)
        for rows, folds in zip(self.members, self.unshuffled):
            shuffled = folds.copy()
            stream.shuffle(shuffled)
            labels[rows] = shuffled
        return labels


def cv_fold_labels(classes: np.ndarray, random_state: int) -> np.ndarray:
    """Test-fold label (0..3) of each row under ``StratifiedKFold(4, shuffle, random_state)``."""
    return _StratifiedPlan(classes).labels(random_state)


def bootstrap_test_folds(classes: np.ndarray, bootstraps: np.ndarray) -> np.ndarray:
    """Fold labels for every bootstrap b (seeded by b), shape (len(bootstraps), n)."""
    plan = _StratifiedPlan(classes)
    stream = np.random.RandomState()
    return np.stack([plan.labels(int(b), stream) for b in bootstraps])


def bootstrap_draws(n_samples: int, n_bootstraps: int, seed: int) -> np.ndarray:
    """Row positions drawn with replacement, one row per bootstrap.

    One ``RandomState(seed)`` stream for the stage, drawn in bootstrap order:
    exactly what ``sklearn.utils.resample(..., replace=True)`` draws.

    Returns
    -------
    ndarray of shape (n_bootstraps, n_samples)
        Of the smallest unsigned type that holds a row position (uint16 below
        65536 rows: a 5000-bootstrap stage at 6000 rows holds 60 MB, not 240);
        the draws travel to the workers and into ``bootstrap_indices`` as such.
    """
    stream = np.random.RandomState(seed)
    draws = np.empty((n_bootstraps, n_samples), dtype=np.min_scalar_type(max(n_samples - 1, 0)))
    for b in range(n_bootstraps):
        draws[b] = stream.randint(0, n_samples, size=n_samples)
    return draws


@dataclass(frozen=True)
class SeededDraws:
    """A stage's draws by their recipe, ``bootstrap_draws(n_samples, n_bootstraps, seed)``.

    Tiny to send: the draws are made where they are needed (``np.asarray``), the
    same bits wherever that is.
    """

    n_samples: int
    n_bootstraps: int
    seed: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_bootstraps, self.n_samples)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        draws = bootstrap_draws(self.n_samples, self.n_bootstraps, self.seed)
        return draws if dtype is None else draws.astype(dtype)


def draws_to_weights(draws: np.ndarray, normalize: bool = False) -> np.ndarray:
    """Bootstrap weights: how many times each row was drawn (optionally summing to 1).

    Parameters
    ----------
    draws : ndarray of shape (n_bootstraps, n_samples)
    normalize : bool

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
