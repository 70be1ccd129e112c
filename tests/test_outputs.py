"""Tables on disk: CSV and Parquet twins read back as the frame that was written."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tfbp_dask.resampling import bootstrap_draws
from tfbp_dask.tables import Draws, write_table, write_tables


def test_csv_and_parquet_twins_read_back(tmp_path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "term": ["TF01:TF02", "TF01:TF03", "I(TF01 ** 2)"],
            "median": rng.normal(size=3),
            "significant": [True, False, True],
            "rank": [1, 2, 3],
        }
    )
    write_table(frame, tmp_path / "table")
    csv = pd.read_csv(tmp_path / "table.csv")
    pd.testing.assert_frame_equal(csv, frame)  # shortest round-trip floats: exact
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "table.parquet"), frame)


def test_values_that_need_quoting_are_quoted(tmp_path) -> None:
    frame = pd.DataFrame({"gene_id": ["YAL001C", "odd, id", 'say "hi"'], "value": [1.5, 2.0, 3.0]})
    write_table(frame, tmp_path / "table")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "table.csv"), frame)
    assert not list(tmp_path.glob(".*.tmp"))


def test_wide_integer_table_from_arrays(tmp_path) -> None:
    draws = bootstrap_draws(400, 50, seed=1)
    compact = draws
    assert compact.dtype == np.uint16
    columns = {"bootstrap": np.arange(50)}
    columns.update({f"draw_{i}": compact[:, i] for i in range(draws.shape[1])})
    write_table(columns, tmp_path / "bootstrap_indices")
    back = pd.read_csv(tmp_path / "bootstrap_indices.csv")
    np.testing.assert_array_equal(back.iloc[:, 1:].to_numpy(), draws)
    np.testing.assert_array_equal(
        pd.read_parquet(tmp_path / "bootstrap_indices.parquet").iloc[:, 1:].to_numpy(), draws
    )
    parquet = pd.read_parquet(tmp_path / "bootstrap_indices.parquet")
    assert (parquet.dtypes.iloc[1:] == np.uint16).all()


def test_draws_twin_holds_the_csv_numbers_near_their_entropy(tmp_path) -> None:
    n_rows, n_bootstraps = 3000, 300
    draws = bootstrap_draws(n_rows, n_bootstraps, seed=4)
    bootstrap = np.arange(n_bootstraps)
    write_tables([(Draws(bootstrap, draws), tmp_path / "bootstrap_indices")])
    wide = pd.read_csv(tmp_path / "bootstrap_indices.csv")
    assert list(wide.columns) == ["bootstrap"] + [f"draw_{i}" for i in range(n_rows)]
    np.testing.assert_array_equal(wide.iloc[:, 1:].to_numpy(), draws)
    twin = pd.read_parquet(tmp_path / "bootstrap_indices.parquet")
    assert list(twin.columns) == ["bootstrap", "draws"]
    np.testing.assert_array_equal(twin["bootstrap"].to_numpy(), bootstrap)
    lists = np.stack(twin["draws"].to_numpy())
    np.testing.assert_array_equal(lists, draws)  # same numbers, same order
    assert lists.dtype == np.uint16
    # Uniform draws carry log2(n_rows) bits each: the twin stays within 10 % of that.
    entropy_bytes = draws.size * np.log2(n_rows) / 8
    assert (tmp_path / "bootstrap_indices.parquet").stat().st_size < 1.1 * entropy_bytes
    assert not list(tmp_path.glob(".*.tmp"))
