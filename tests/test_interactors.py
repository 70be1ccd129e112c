"""Stage 4 vs a direct LinearRegression / LassoCV computation on the same rows and folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LassoCV, LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import StratifiedKFold

from tfbp_dask.datagen import make_dataset
from tfbp_dask.design import interaction, main_effect
from tfbp_dask.interactors import evaluate_interactors
from tfbp_dask.resampling import stratification_classes

BINS = (0, 8, 12, np.inf)


@pytest.fixture(scope="module")
def frames():
    data = make_dataset(n_genes=400, n_tfs=6, seed=2)
    predictors = data.predictors.set_index("gene_id")
    response = data.response.set_index("gene_id")["TF01"]
    return predictors, response, data.planted["TF01"]


def _direct_avg_r2(columns: dict[str, np.ndarray], y: np.ndarray, classes: np.ndarray) -> float:
    X = np.column_stack(list(columns.values()))
    scores = []
    for train, test in StratifiedKFold(4, shuffle=True, random_state=42).split(X, classes):
        model = LinearRegression().fit(X[train], y[train])
        scores.append(r2_score(y[test], model.predict(X[test])))
    return float(np.mean(scores))


def test_linear_method_matches_direct_linear_regression(frames):
    predictors, response, partners = frames
    terms = [
        interaction("TF01", partners[0]),
        interaction("TF01", partners[1]),
        main_effect("TF05"),
    ]
    result = evaluate_interactors(predictors, response, "TF01", terms, BINS)
    y = response.to_numpy()
    classes = stratification_classes(predictors["TF01"].to_numpy(), BINS)
    p = predictors["TF01"].to_numpy()
    full = {
        f"TF01:{partners[0]}": p * predictors[partners[0]].to_numpy(),
        f"TF01:{partners[1]}": p * predictors[partners[1]].to_numpy(),
        "TF05": predictors["TF05"].to_numpy(),
    }
    base = _direct_avg_r2(full, y, classes)
    table = result.significance.set_index("interactor")
    for partner in partners:
        name = f"TF01:{partner}"
        swapped = {
            (partner if k == name else k): (predictors[partner].to_numpy() if k == name else v)
            for k, v in full.items()
        }
        main = _direct_avg_r2(swapped, y, classes)
        assert table.loc[name, "variant"] == partner
        assert table.loc[name, "avg_r2_interactor"] == pytest.approx(base, rel=1e-9)
        assert table.loc[name, "avg_r2_main_effect"] == pytest.approx(main, rel=1e-9)
        assert table.loc[name, "delta_r2"] == pytest.approx(main - base, rel=1e-9)
    # The planted interactions beat their main effects; TF05 is carried as "other".
    final = result.final_selection.set_index("term")
    assert {f"TF01:{p}" for p in partners} <= set(final.index)
    assert final.loc["TF05", "kind"] == "other"
    assert len(result.comparison) == 4 * 3  # all-terms model + one swap per interactor, 4 folds


def test_main_effect_already_in_model_is_not_duplicated(frames):
    predictors, response, partners = frames
    terms = [interaction("TF01", partners[0]), main_effect(partners[0])]
    result = evaluate_interactors(predictors, response, "TF01", terms, BINS)
    y = response.to_numpy()
    classes = stratification_classes(predictors["TF01"].to_numpy(), BINS)
    alone = _direct_avg_r2({partners[0]: predictors[partners[0]].to_numpy()}, y, classes)
    row = result.significance.iloc[0]
    assert row["avg_r2_main_effect"] == pytest.approx(alone, rel=1e-9)
    terms_selected = result.final_selection["term"].tolist()
    assert len(terms_selected) == len(set(terms_selected))  # a main effect is listed once


def test_lasso_method_matches_direct_lassocv(frames):
    predictors, response, partners = frames
    terms = [interaction("TF01", partners[0]), interaction("TF01", "TF06")]
    result = evaluate_interactors(predictors, response, "TF01", terms, BINS, lasso=True)
    p = predictors["TF01"].to_numpy()
    X = np.column_stack(
        [
            p * predictors[partners[0]],
            p * predictors["TF06"],
            predictors[partners[0]],
            predictors["TF06"],
        ]
    )
    y = response.to_numpy()
    classes = stratification_classes(p, BINS)
    cv = list(StratifiedKFold(4, shuffle=True, random_state=42).split(X, classes))
    direct = LassoCV(
        selection="random", alphas=100, eps=1e-3, tol=1e-4, max_iter=10000, random_state=42, cv=cv
    ).fit(X, y)
    table = result.significance.set_index("interactor")
    # Same problem, same solver; only the memory layout of X differs (last-bit noise).
    assert table.loc[f"TF01:{partners[0]}", "coef_interactor"] == pytest.approx(direct.coef_[0])
    assert table.loc["TF01:TF06", "coef_interactor"] == pytest.approx(direct.coef_[1], abs=1e-12)
    assert table.loc["TF01:TF06", "coef_main_effect"] == pytest.approx(direct.coef_[3], abs=1e-12)
    assert table["r2_lasso_model"].iloc[0] == pytest.approx(r2_score(y, direct.predict(X)))
    assert result.lasso_fit == {
        "n_iter": direct.n_iter_,
        "converged": True,
        "alpha": pytest.approx(direct.alpha_, rel=1e-12),
    }
    kinds = dict(zip(result.final_selection["term"], result.final_selection["kind"]))
    assert kinds[f"TF01:{partners[0]}"] == "interactor"
    assert isinstance(result.final_selection, pd.DataFrame)


def test_lasso_method_records_non_convergence(frames, caplog):
    predictors, response, partners = frames
    terms = [interaction("TF01", partners[0]), interaction("TF01", "TF06")]
    result = evaluate_interactors(
        predictors, response, "TF01", terms, BINS, lasso=True, max_iter=1
    )  # no ConvergenceWarning escapes: pytest would turn it into an error
    assert result.lasso_fit["converged"] is False
    assert result.lasso_fit["n_iter"] == 1
    assert any("did not converge within --max_iter 1" in r.message for r in caplog.records)
    linear = evaluate_interactors(predictors, response, "TF01", terms, BINS)
    assert linear.lasso_fit is None
