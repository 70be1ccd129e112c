"""Terms, design matrices, scaling and the top-N rule vs direct computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfbp_dask.design import design_matrix, stage1_terms, top_n_rows


@pytest.fixture
def predictors():
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        rng.gamma(1.0, 1.0, size=(30, 4)),
        columns=["A", "P", "B", "C"],
        index=[f"g{i}" for i in range(30)],
    )


def test_term_order_and_names(predictors):
    terms = stage1_terms(
        "P",
        list(predictors.columns),
        ptf_main_effect=True,
        squared_pTF=True,
        cubic_pTF=True,
        row_max=True,
        add_model_variables=["C"],
        exclude_interactor_variables=["B"],
    )
    assert [t.name for t in terms] == ["P", "P:A", "P:C", "I(P ** 2)", "I(P ** 3)", "row_max", "C"]


def test_exclude_all_removes_every_interaction(predictors):
    terms = stage1_terms("P", list(predictors.columns), exclude_all_interactors=True, row_max=True)
    assert [t.name for t in terms] == ["row_max"]


def test_design_values_match_direct_formulas(predictors):
    terms = stage1_terms(
        "P",
        list(predictors.columns),
        ptf_main_effect=True,
        squared_pTF=True,
        cubic_pTF=True,
        row_max=True,
        add_model_variables=["C"],
    )
    X = design_matrix(predictors, "P", terms)
    p = predictors["P"].to_numpy()
    expected = np.column_stack(
        [
            p,
            p * predictors["A"],
            p * predictors["B"],
            p * predictors["C"],
            p**2,
            p**3,
            predictors.max(axis=1),
            predictors["C"],
        ]
    )
    np.testing.assert_allclose(X, expected)


def test_scale_by_std_divides_by_population_std_without_centring(predictors):
    frame = predictors.assign(Z=1.0)  # a zero-variance column stays as is
    terms = stage1_terms("P", list(frame.columns))
    raw = design_matrix(frame, "P", terms)
    scaled = design_matrix(frame, "P", terms, scale_by_std=True)
    std = raw.std(axis=0, ddof=0)
    for j in range(raw.shape[1]):
        if std[j] == 0:
            np.testing.assert_array_equal(scaled[:, j], raw[:, j])
        else:
            np.testing.assert_allclose(scaled[:, j], raw[:, j] / std[j])
            assert scaled[:, j].mean() != pytest.approx(0.0)


def _top_n_by_hand(values: pd.Series, n: int) -> set[str]:
    # Average ranks, descending; keep all rows with rank <= the largest rank r
    # such that at most n rows have rank <= r.
    ordered = sorted(values.items(), key=lambda item: -item[1])
    ranks = {}
    i = 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j][1] == ordered[i][1]:
            j += 1
        for k in range(i, j):
            ranks[ordered[k][0]] = (i + 1 + j) / 2
        i = j
    best = None
    for r in sorted(set(ranks.values())):
        if sum(1 for v in ranks.values() if v <= r) <= n:
            best = r
    return {key for key, r in ranks.items() if best is not None and r <= best}


@pytest.mark.parametrize("n", [1, 3, 4, 5, 6, 10])
def test_top_n_ties_give_fewer_never_more(n):
    values = pd.Series([9, 8, 8, 7, 7, 7, 6, 5, 5, 1.0], index=list("abcdefghij"))
    chosen = top_n_rows(values, n)
    assert set(chosen) == _top_n_by_hand(values, n)
    assert len(chosen) <= n


def test_top_n_cut_inside_a_tie_drops_the_tie():
    values = pd.Series([9, 8, 8, 7.0], index=list("abcd"))
    assert list(top_n_rows(values, 2)) == ["a"]
    assert list(top_n_rows(values, 3)) == ["a", "b", "c"]
