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
