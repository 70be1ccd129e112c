"""Stage 4: is each interaction term better than its partner's main effect? (SPEC §8)

Two methods: the default compares cross-validated R² of ordinary least squares
models (the interaction vs. its main effect in its place); ``--stage4_lasso``
fits one LassoCV holding both and keeps whichever keeps a non-zero coefficient.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import stats
from .design import Term, design_matrix, main_effect
from .engines import LassoParams
from .resampling import N_FOLDS, cv_fold_labels, stratification_classes

logger = logging.getLogger(__name__)

FOLD_SEED = 42
ALL_TERMS_MODEL = "all_terms"


@dataclass(frozen=True)
class InteractorResult:
    """What stage 4 decided and the figures it decided on.

    Attributes
    ----------
    method : str
        ``linear`` or ``lasso``.
    n_rows : int
        Rows the comparison ran on.
    significance : DataFrame
        One row per interaction term (SPEC §8 columns for the method).
    comparison : DataFrame
        ``model, interactor, variant, fold, r2``: every model compared, per fold
        (linear), or the single lasso model's in-sample R² (lasso, fold = -1).
    final_selection : DataFrame
        ``term, kind, reason``.
    lasso_fit : dict, optional
        ``--stage4_lasso`` only: ``n_iter`` (coordinate-descent sweeps of the
        refit at the chosen alpha), ``converged`` (False if a path stopped at
        ``--max_iter`` sweeps without converging) and the chosen ``alpha``.
    """

    method: str
    n_rows: int
    significance: pd.DataFrame
    comparison: pd.DataFrame
    final_selection: pd.DataFrame
    lasso_fit: dict[str, Any] | None = None


def ols_fold_r2(X: np.ndarray, y: np.ndarray, test_fold: np.ndarray) -> np.ndarray:
    """Test-fold R² of an intercept-fitted least-squares model, one value per fold.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_terms)
    y : ndarray of shape (n_samples,)
    test_fold : ndarray of shape (n_samples,)
        Fold label of each row (0 .. n_folds - 1).
    """
    scores = []
    for fold in range(N_FOLDS):
        test = test_fold == fold
        train = ~test
        x_mean = X[train].mean(axis=0)
        y_mean = y[train].mean()
        coef, *_ = np.linalg.lstsq(X[train] - x_mean, y[train] - y_mean, rcond=None)
        intercept = y_mean - x_mean @ coef
        scores.append(stats.r2(y[test], X[test] @ coef + intercept))
    return np.asarray(scores)


def _replace(terms: Sequence[Term], old: Term, new: Term) -> list[Term]:
    """``terms`` with ``old`` swapped for ``new`` (or just dropped if ``new`` is already there)."""
    if new in terms:
        return [term for term in terms if term != old]
    return [new if term == old else term for term in terms]


def evaluate_interactors(
    predictors: pd.DataFrame,
    response: pd.Series,
    perturbed_tf: str,
    terms: Sequence[Term],
    bins: Sequence[float],
    *,
    scale_by_std: bool = False,
    lasso: bool = False,
    max_iter: int = 10000,
    fold_r2: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    variant_last: bool = False,
    lasso_seed: int = FOLD_SEED,
) -> InteractorResult:
    """Run stage 4 on the given rows with the stage-2 significant ``terms``.

    ``fold_r2`` replaces ``ols_fold_r2`` as the per-fold scorer of the linear method,
    ``variant_last`` puts the main effect last in each variant instead of in the
    interactor's place, ``lasso_seed`` is the ``--stage4_lasso`` fit's ``random_state``
    (``compat.stage4_options`` sets them for ``--compat tfbpmodeling``).
    """
    y = response.to_numpy(dtype=float)
    classes = stratification_classes(predictors[perturbed_tf].to_numpy(), bins)
    folds = cv_fold_labels(classes, FOLD_SEED)
    interactions = [term for term in terms if term.kind == "interaction"]
    others = [term for term in terms if term.kind != "interaction"]
    lasso_fit = None
    if lasso:
        significance, comparison, chosen, lasso_fit = _lasso_method(
            predictors,
            y,
            perturbed_tf,
            terms,
            interactions,
            folds,
            scale_by_std,
            max_iter,
            lasso_seed,
        )
    else:
        significance, comparison, chosen = _linear_method(
            predictors,
            y,
            perturbed_tf,
            terms,
            interactions,
            folds,
            scale_by_std,
            fold_r2 or ols_fold_r2,
            _append if variant_last else _replace,
        )
    reason_other = "significant in the top-N stage; not an interaction term"
    # A main effect chosen for an interactor may already be a term of its own
    # (e.g. from --add_model_variables): it is listed once, with its choice.
    picked = {name for name, _, _ in chosen}
    selection = chosen + [
        (term.name, "other", reason_other) for term in others if term.name not in picked
    ]
    final = pd.DataFrame(selection, columns=["term", "kind", "reason"])
    return InteractorResult(
        "lasso" if lasso else "linear", len(y), significance, comparison, final, lasso_fit
    )


def _append(terms: Sequence[Term], old: Term, new: Term) -> list[Term]:
    """``terms`` without ``old``, with ``new`` last unless already there (listed once)."""
    kept = [term for term in terms if term != old]
    return kept if new in kept else kept + [new]


def _linear_method(
    predictors,
    y,
    perturbed_tf,
    terms,
    interactions,
    folds,
    scale_by_std,
    fold_r2=ols_fold_r2,
    arrange=_replace,
):
    def fold_scores(model_terms: Sequence[Term]) -> np.ndarray:
        X = design_matrix(predictors, perturbed_tf, model_terms, scale_by_std)
        return fold_r2(X, y, folds)

    base = fold_scores(terms)
    comparison = [(ALL_TERMS_MODEL, "", "", fold, score) for fold, score in enumerate(base)]
    rows, chosen = [], []
    for term in interactions:
        variant = main_effect(term.column)
        replaced = fold_scores(arrange(terms, term, variant))
        model = f"{term.name} -> {variant.name}"
        comparison += [
            (model, term.name, variant.name, fold, score) for fold, score in enumerate(replaced)
        ]
        avg_interactor, avg_main = float(base.mean()), float(replaced.mean())
        rows.append((term.name, variant.name, avg_interactor, avg_main, avg_main - avg_interactor))
        if avg_interactor >= avg_main:
            chosen.append(
                (
                    term.name,
                    "interactor",
                    f"avg R² {avg_interactor:.4f} >= {avg_main:.4f} with {variant.name}",
                )
            )
        else:
            chosen.append(
                (
                    variant.name,
                    "main_effect",
                    f"avg R² {avg_main:.4f} > {avg_interactor:.4f} with {term.name}",
                )
            )
    significance = pd.DataFrame(
        rows,
        columns=["interactor", "variant", "avg_r2_interactor", "avg_r2_main_effect", "delta_r2"],
    )
    comparison_table = pd.DataFrame(
        comparison, columns=["model", "interactor", "variant", "fold", "r2"]
    )
    return significance, comparison_table, chosen


def _lasso_method(
    predictors,
    y,
    perturbed_tf,
    terms,
    interactions,
    folds,
    scale_by_std,
    max_iter,
    seed=FOLD_SEED,
):
    model_terms = list(terms)
    for term in interactions:
        if main_effect(term.column) not in model_terms:
            model_terms.append(main_effect(term.column))
    X = design_matrix(predictors, perturbed_tf, model_terms, scale_by_std)
    from .engines.sklearn import fit_one  # scikit-learn is imported only where it is used

    model, converged = fit_one(X, y, None, folds, seed, LassoParams(max_iter=max_iter))
    fit = {"n_iter": int(model.n_iter_), "converged": converged, "alpha": float(model.alpha_)}
    if not converged:
        logger.warning(
            "%s: stage-4 LassoCV did not converge within --max_iter %d sweeps at some alpha "
            "(refit: %d sweeps)",
            perturbed_tf,
            max_iter,
            fit["n_iter"],
        )
    r2_model = stats.r2(y, model.predict(X))
    coef = dict(zip((term.name for term in model_terms), model.coef_))
    rows, chosen = [], []
    for term in interactions:
        variant = main_effect(term.column)
        c_int, c_main = float(coef[term.name]), float(coef[variant.name])
        rows.append((term.name, variant.name, r2_model, c_int, c_main))
        if c_int != 0:
            chosen.append((term.name, "interactor", f"lasso coefficient {c_int:.4g} != 0"))
        elif c_main != 0:
            chosen.append(
                (variant.name, "main_effect", f"interactor coefficient 0, main effect {c_main:.4g}")
            )
    significance = pd.DataFrame(
        rows,
        columns=["interactor", "variant", "r2_lasso_model", "coef_interactor", "coef_main_effect"],
    )
    comparison = pd.DataFrame(
        [("lasso_all_terms", "", "", -1, r2_model)],
        columns=["model", "interactor", "variant", "fold", "r2"],
    )
    return significance, comparison, chosen, fit
