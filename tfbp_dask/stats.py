"""Percentile confidence intervals, significance, feature importance and R² (SPEC §7, §9)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def percentile_ci(coefs: np.ndarray, ci_level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds of each column at ``ci_level`` percent.

    Parameters
    ----------
    coefs : ndarray of shape (n_bootstraps, n_terms)
    ci_level : float
        In (0, 100).

    Returns
    -------
    lower, upper : ndarray of shape (n_terms,)
    """
    tail = (100.0 - ci_level) / 2.0
    # Adding 0.0 turns the -0.0 of an all-zero column into 0.0 in the outputs.
    lower = np.percentile(coefs, tail, axis=0) + 0.0
    upper = np.percentile(coefs, 100.0 - tail, axis=0) + 0.0
    return lower, upper


def significant_mask(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """A term is significant when its interval excludes 0 (strictly)."""
    return (lower > 0) | (upper < 0)


def confidence_table(coefs: np.ndarray, terms: Sequence[str], ci_level: float) -> pd.DataFrame:
    """``term, ci_level, lower, upper, significant`` for every term, in design order."""
    lower, upper = percentile_ci(coefs, ci_level)
    return pd.DataFrame(
        {
            "term": list(terms),
            "ci_level": float(ci_level),
            "lower": lower,
            "upper": upper,
            "significant": significant_mask(lower, upper),
        }
    )


def feature_importance(
    coefs: np.ndarray,
    terms: Sequence[str],
    ci_level: float,
    confidence: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per-term summary of the bootstrap coefficients, ranked.

    Rank 1 is the most important term: highest selection frequency (share of
    bootstraps with a non-zero coefficient), ties broken by larger |median|,
    then by design order. ``confidence``: the ``confidence_table`` of the same
    arguments, when the caller has it (not computed twice).
    """
    if confidence is None:
        confidence = confidence_table(coefs, terms, ci_level)
    median = np.median(coefs, axis=0)
    frequency = np.count_nonzero(coefs, axis=0) / coefs.shape[0]
    order = np.lexsort((np.arange(len(terms)), -np.abs(median), -frequency))
    names = list(terms)
    # Built once, already in rank order: the same frame as adding the columns to the
    # confidence table and sorting it, without pandas' per-column work.
    return pd.DataFrame(
        {
            "term": [names[j] for j in order],
            "mean": coefs.mean(axis=0)[order],
            "median": median[order],
            "std": coefs.std(axis=0)[order],
            "selection_frequency": frequency[order],
            "lower": confidence["lower"].to_numpy()[order],
            "upper": confidence["upper"].to_numpy()[order],
            "significant": confidence["significant"].to_numpy()[order],
            "rank": np.arange(1, len(names) + 1, dtype=np.int64),
        }
    )


def r2(y: np.ndarray, prediction: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot.

    For a constant ``y`` it is 1 for an exact fit and 0 otherwise (as scikit-learn's
    ``r2_score`` does), so a degenerate fold never yields NaN or -inf.
    """
    residual = float(np.sum((y - prediction) ** 2))
    total = float(np.sum((y - y.mean()) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total
