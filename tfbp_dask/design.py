"""Model terms, their names, design matrices for each stage, top-N rows, scaling (SPEC §3, §8).

A term knows how to compute its column from the predictor table, so a later
stage can rebuild the same terms on other rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .resampling import rank

ROW_MAX = "row_max"


@dataclass(frozen=True)
class Term:
    """One column of a design matrix.

    Attributes
    ----------
    name : str
        The name used in every output (``TF1:TF2``, ``I(TF1 ** 2)``, ``row_max``, ``TF2``).
    kind : str
        ``interaction`` (pTF × column), ``main`` (a predictor column as is),
        ``power`` (pTF to ``power``) or ``row_max``.
    column : str
        The predictor column involved (the partner for an interaction).
    power : int
        Exponent of a ``power`` term.
    """

    name: str
    kind: str
    column: str = ""
    power: int = 1

    def values(self, predictors: pd.DataFrame, perturbed_tf: str) -> np.ndarray:
        """The term's column over the rows of ``predictors``."""
        ptf = predictors[perturbed_tf].to_numpy(dtype=float)
        if self.kind == "interaction":
            return ptf * predictors[self.column].to_numpy(dtype=float)
        if self.kind == "main":
            return predictors[self.column].to_numpy(dtype=float)
        if self.kind == "power":
            return ptf**self.power
        if self.kind == "row_max":
            return predictors.to_numpy(dtype=float).max(axis=1)
        raise ValueError(f"unknown term kind {self.kind!r}")


def interaction(perturbed_tf: str, column: str) -> Term:
    """The ``{pTF}:{column}`` term."""
    return Term(f"{perturbed_tf}:{column}", "interaction", column)


def main_effect(column: str) -> Term:
    """A predictor column as a main effect, named after the column."""
    return Term(column, "main", column)


def stage1_terms(
    perturbed_tf: str,
    predictor_columns: Sequence[str],
    *,
    ptf_main_effect: bool = False,
    exclude_interactor_variables: Sequence[str] = (),
    exclude_all_interactors: bool = False,
    squared_pTF: bool = False,
    cubic_pTF: bool = False,
    row_max: bool = False,
    add_model_variables: Sequence[str] = (),
) -> list[Term]:
    """The all-data model's terms, in the SPEC §3 order."""
    terms: list[Term] = []
    if ptf_main_effect:
        terms.append(main_effect(perturbed_tf))
    if not exclude_all_interactors:
        excluded = set(exclude_interactor_variables)
        terms += [
            interaction(perturbed_tf, column)
            for column in predictor_columns
            if column != perturbed_tf and column not in excluded
        ]
    if squared_pTF:
        terms.append(Term(f"I({perturbed_tf} ** 2)", "power", perturbed_tf, 2))
    if cubic_pTF:
        terms.append(Term(f"I({perturbed_tf} ** 3)", "power", perturbed_tf, 3))
    if row_max:
        terms.append(Term(ROW_MAX, "row_max"))
    names = {term.name for term in terms}
    terms += [main_effect(name) for name in add_model_variables if name not in names]
    return terms


def design_matrix(
    predictors: pd.DataFrame,
    perturbed_tf: str,
    terms: Sequence[Term],
    scale_by_std: bool = False,
) -> np.ndarray:
    """Build the design matrix of ``terms`` over the rows of ``predictors``.

    With ``scale_by_std`` every column is divided by its population standard
    deviation over these rows (no centring); a zero-variance column is left as is.

    Returns
    -------
    ndarray of shape (n_rows, n_terms), Fortran order
    """
    X = np.empty((len(predictors), len(terms)), order="F")
    targets = [j for j, term in enumerate(terms) if term.kind == "interaction"]
    if targets:  # the table's values once, not a pandas column per term
        names = [perturbed_tf] + [terms[j].column for j in targets]
        positions = predictors.columns.get_indexer(names)
        if (positions < 0).any():
            raise KeyError(f"not predictor columns: {sorted(set(np.array(names)[positions < 0]))}")
        ptf_at, *sources = positions
        values = predictors.to_numpy(dtype=float)
        ptf = values[:, ptf_at]
        for j, k in zip(targets, sources, strict=True):
            np.multiply(ptf, values[:, k], out=X[:, j])
    for j, term in enumerate(terms):
        if term.kind != "interaction":
            X[:, j] = term.values(predictors, perturbed_tf)
    if scale_by_std:
        std = X.std(axis=0)
        std[std == 0] = 1.0
        X /= std
    return X


def top_n_rows(ptf_binding: pd.Series, top_n: int) -> pd.Index:
    """Features among the ``top_n`` strongest pTF binders (SPEC §8, stage 2).

    Ranks are descending with ties averaged; the cutoff is the largest distinct
    rank r with count(rank ≤ r) ≤ top_n, so ties at the cutoff give fewer than
    ``top_n`` rows, never more. Rows keep their original order.
    """
    ranks = rank(-ptf_binding.to_numpy(dtype=float), ties="average")
    distinct = np.unique(ranks)
    counts = np.searchsorted(np.sort(ranks), distinct, side="right")
    allowed = distinct[counts <= top_n]
    if len(allowed) == 0:
        return ptf_binding.index[:0]
    return ptf_binding.index[ranks <= allowed[-1]]


def rows_design_matrix(
    values: np.ndarray,
    keep: np.ndarray | None,
    columns: Sequence[str],
    perturbed_tf: str,
    terms: Sequence[Term],
    scale_by_std: bool,
) -> np.ndarray:
    """``design_matrix`` on rows ``keep`` of a batch's checked predictor values.

    Parameters
    ----------
    values : ndarray of shape (n_batch_rows, n_columns)
        ``CheckedPredictors.values``.
    keep : ndarray of shape (n_batch_rows,) of bool, or None (every row)
    columns : sequence of str
        The predictor columns of ``values``.
    """
    rows = values if keep is None else values[keep]
    frame = pd.DataFrame(rows, columns=list(columns))
    return design_matrix(frame, perturbed_tf, terms, scale_by_std)
