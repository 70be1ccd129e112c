"""CIs, significance and feature importance vs numpy on the same arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfbp_dask.stats import confidence_table, feature_importance, percentile_ci, r2


@pytest.fixture
def coefs():
    rng = np.random.default_rng(1)
    table = rng.normal([0.5, 0.0, -0.3, 0.05], 0.1, size=(200, 4))
    table[rng.random(200) < 0.4, 1] = 0.0
    table[:, 3] = np.where(rng.random(200) < 0.5, 0.0, table[:, 3])
    return table


@pytest.mark.parametrize("level", [98.0, 90.0, 50.0])
def test_percentile_ci_equals_numpy(coefs, level):
    lower, upper = percentile_ci(coefs, level)
    for j in range(coefs.shape[1]):
        assert lower[j] == np.percentile(coefs[:, j], (100 - level) / 2)
        assert upper[j] == np.percentile(coefs[:, j], 100 - (100 - level) / 2)


def test_significance_is_strict(coefs):
    table = confidence_table(coefs, ["a", "b", "c", "d"], 90.0)
    expected = (table["lower"] > 0) | (table["upper"] < 0)
    assert list(table["significant"]) == list(expected)
    assert list(table["significant"][:3]) == [True, False, True]
    zero = confidence_table(np.zeros((10, 1)), ["z"], 90.0)
    assert not zero["significant"][0]  # an interval [0, 0] touches 0


def test_feature_importance_takes_the_confidence_table_it_is_given(coefs):
    names = ["a", "b", "c", "d"]
    confidence = confidence_table(coefs, names, 90.0)
    before = confidence.copy()
    given = feature_importance(coefs, names, 90.0, confidence)
    pd.testing.assert_frame_equal(given, feature_importance(coefs, names, 90.0), check_exact=True)
    pd.testing.assert_frame_equal(confidence, before, check_exact=True)  # left as it was


def test_feature_importance_ranks_by_frequency_then_median(coefs):
    table = feature_importance(coefs, ["a", "b", "c", "d"], 90.0)
    freq = (coefs != 0).mean(axis=0)
    median = np.median(coefs, axis=0)
    by_name = table.set_index("term")
    for j, name in enumerate("abcd"):
        assert by_name.loc[name, "selection_frequency"] == freq[j]
        assert by_name.loc[name, "median"] == median[j]
        assert by_name.loc[name, "mean"] == pytest.approx(coefs[:, j].mean())
        assert by_name.loc[name, "std"] == pytest.approx(coefs[:, j].std())
    expected = sorted("abcd", key=lambda n: (-freq["abcd".index(n)], -abs(median["abcd".index(n)])))
    assert list(table["term"]) == expected
    assert list(table["rank"]) == [1, 2, 3, 4]


def test_r2_matches_sklearn():
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(2)
    y, pred = rng.normal(size=40), rng.normal(size=40)
    assert r2(y, pred) == pytest.approx(r2_score(y, pred))
    assert r2(np.ones(5), np.ones(5)) == r2_score(np.ones(5), np.ones(5))
    assert r2(np.ones(5), np.zeros(5)) == r2_score(np.ones(5), np.zeros(5))


def test_feature_importance_is_the_confidence_table_ranked_by_pandas():
    """The table built in rank order equals the confidence table with the columns added
    and sorted by pandas, on tables with ties in frequency and median."""
    rng = np.random.default_rng(5)
    for _ in range(30):
        n, p = rng.integers(1, 200), rng.integers(1, 30)
        coefs = np.round(rng.normal(size=(n, p)), int(rng.integers(0, 3)))
        coefs[rng.random((n, p)) < rng.random()] = 0.0
        names = [f"t{j}" for j in range(p)]
        table = confidence_table(coefs, names, 90.0).drop(columns="ci_level")
        table.insert(1, "mean", coefs.mean(axis=0))
        table.insert(2, "median", np.median(coefs, axis=0))
        table.insert(3, "std", coefs.std(axis=0))
        table.insert(4, "selection_frequency", (coefs != 0).sum(axis=0) / n)
        table["abs_median"] = table["median"].abs()
        table["position"] = np.arange(p)
        expected = table.sort_values(
            ["selection_frequency", "abs_median", "position"], ascending=[False, False, True]
        ).drop(columns=["abs_median", "position"])
        expected["rank"] = np.arange(1, p + 1, dtype=np.int64)
        pd.testing.assert_frame_equal(
            feature_importance(coefs, names, 90.0),
            expected.reset_index(drop=True),
            check_exact=True,
        )
