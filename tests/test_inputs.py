"""Tests of tfbp_dask.inputs: reading, validation, alignment, blacklist and row order."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from bad_input_cases import CASES, PERTURBED_TF, BadInputCase, valid_files

from tfbp_dask.errors import InputError
from tfbp_dask.inputs import (
    ModelingData,
    check_predictor_rows,
    load_inputs,
    prepare_modeling_data,
    read_blacklist,
    read_table,
    reading,
)


def assert_same_modeling_data(left: ModelingData, right: ModelingData) -> None:
    assert left.perturbed_tf == right.perturbed_tf
    pd.testing.assert_series_equal(left.response, right.response, check_exact=True)
    pd.testing.assert_frame_equal(left.predictors, right.predictors, check_exact=True)
    assert left.feature_counts == right.feature_counts
    assert left.warnings == right.warnings


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return valid_files(tmp_path)


# --- bad inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_raises_one_line(case: BadInputCase, tmp_path: Path) -> None:
    kwargs = case.build(tmp_path)
    with pytest.raises(InputError) as caught:
        load_inputs(**kwargs)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(("response file ", "predictors file ", "blacklist file "))
    for expected in case.expect:
        assert expected in message, f"{expected!r} not in {message!r}"


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


def test_many_offending_ids_are_abbreviated(files: tuple[Path, Path]) -> None:
    response, predictors = files
    frame = pd.read_csv(predictors)
    frame.loc[10:30, "TF02"] = np.nan
    frame.to_csv(predictors, index=False)
    with pytest.raises(InputError, match=r"missing .* \(16 more\)"):
        load_inputs(response, predictors, PERTURBED_TF)


def test_several_bad_columns_are_named(files: tuple[Path, Path]) -> None:
    response, predictors = files
    frame = pd.read_csv(predictors)
    frame.loc[12, ["TF01", "TF04", "TF05"]] = np.inf
    frame.to_csv(predictors, index=False)
    with pytest.raises(InputError, match=r"'TF01' has infinite .*other columns .*'TF04', 'TF05'"):
        load_inputs(response, predictors, PERTURBED_TF)


def test_legacy_format_needs_exactly_one_column(files: tuple[Path, Path]) -> None:
    response, predictors = files
    frame = pd.read_csv(response)[["gene_id", "TF01", "TF02"]]
    frame.to_csv(response, index=False)
    with pytest.raises(InputError, match="no column named 'TF03'"):
        load_inputs(response, predictors, PERTURBED_TF)


def test_pandas_errors_do_not_escape(tmp_path: Path, files: tuple[Path, Path]) -> None:
    response, predictors = files
    not_parquet = tmp_path / "response.parquet"
    not_parquet.write_bytes(response.read_bytes())
    with pytest.raises(InputError, match="cannot be read as Parquet"):
        load_inputs(not_parquet, predictors, PERTURBED_TF)


# --- happy paths ----------------------------------------------------------------------------


def test_valid_csv(files: tuple[Path, Path]) -> None:
    response, predictors = files
    data = load_inputs(response, predictors, PERTURBED_TF)
    source_response = pd.read_csv(response, index_col=0)
    source_predictors = pd.read_csv(predictors, index_col=0)
    assert data.perturbed_tf == PERTURBED_TF
    assert data.response.name == PERTURBED_TF
    assert data.response.dtype == np.float64
    assert (data.predictors.dtypes == np.float64).all()
    assert list(data.predictors.columns) == list(source_predictors.columns)
    assert data.response.index.equals(data.predictors.index)
    assert data.response.index.name == "gene_id"
    for feature in ["Y00000W", "TF01", "Y00034W"]:
        assert data.response[feature] == pytest.approx(source_response.loc[feature, "TF03"])
        np.testing.assert_allclose(
            data.predictors.loc[feature].to_numpy(), source_predictors.loc[feature].to_numpy()
        )
    assert data.warnings == ()


def test_rows_sorted_and_ptf_removed_without_blacklist(tmp_path: Path) -> None:
    response, predictors = valid_files(tmp_path)
    # Shuffle the rows so that the order is not inherited from the files.
    for path, seed in ((response, 1), (predictors, 2)):
        frame = pd.read_csv(path)
        frame.sample(frac=1.0, random_state=seed).to_csv(path, index=False)
    data = load_inputs(response, predictors, PERTURBED_TF)
    ids = list(data.response.index)
    assert ids == sorted(ids)
    assert list(data.predictors.index) == ids
    assert PERTURBED_TF not in ids
    assert "TF01" in ids
    assert data.feature_counts["blacklisted_removed"] == 1
    assert data.feature_counts["modeled"] == 39


def test_csv_and_parquet_inputs_are_identical(tmp_path: Path, files: tuple[Path, Path]) -> None:
    response, predictors = files
    from_csv = load_inputs(response, predictors, PERTURBED_TF)
    response_pq = tmp_path / "response.parquet"
    predictors_pq = tmp_path / "predictors.pq"
    pd.read_csv(response).to_parquet(response_pq, index=False)
    # Ids in the index (as written by frame.set_index(...).to_parquet()) are found too.
    pd.read_csv(predictors).set_index("gene_id").to_parquet(predictors_pq)
    from_parquet = load_inputs(response_pq, predictors_pq, PERTURBED_TF)
    assert_same_modeling_data(from_csv, from_parquet)


def test_bom_and_crlf_read_the_same(tmp_path: Path, files: tuple[Path, Path]) -> None:
    response, predictors = files
    plain = load_inputs(response, predictors, PERTURBED_TF)
    bom_response = tmp_path / "bom_response.csv"
    crlf_predictors = tmp_path / "crlf_predictors.csv"
    bom_response.write_bytes(b"\xef\xbb\xbf" + response.read_bytes())
    crlf_predictors.write_bytes(predictors.read_bytes().replace(b"\n", b"\r\n"))
    table = read_table(bom_response, "response")
    assert table.index.name == "gene_id"
    assert_same_modeling_data(plain, load_inputs(bom_response, crlf_predictors, PERTURBED_TF))


def test_blacklist_applied_and_counted(tmp_path: Path, files: tuple[Path, Path]) -> None:
    response, predictors = files
    blacklist = tmp_path / "blacklist.txt"
    blacklist.write_text("  Y00003W  \n\nY00010W\nNOT_A_GENE\n\n   \nTF01\nY00003W\n")
    assert read_blacklist(blacklist) == ["Y00003W", "Y00010W", "NOT_A_GENE", "TF01"]
    data = load_inputs(response, predictors, PERTURBED_TF, blacklist_file=blacklist)

    response_ids = set(pd.read_csv(response)["gene_id"])
    predictor_ids = set(pd.read_csv(predictors)["gene_id"])
    common = response_ids & predictor_ids
    removed = common & {"Y00003W", "Y00010W", "NOT_A_GENE", "TF01", PERTURBED_TF}
    assert set(data.response.index) == common - removed
    assert data.feature_counts == {
        "response_rows": len(response_ids),
        "predictor_rows": len(predictor_ids),
        "common": len(common),
        "blacklisted_removed": len(removed),
        "modeled": len(common - removed),
    }
    assert data.feature_counts["blacklisted_removed"] == 4


def test_feature_counts_with_partial_overlap(tmp_path: Path, files: tuple[Path, Path]) -> None:
    response, predictors = files
    response_frame = pd.read_csv(response)
    predictors_frame = pd.read_csv(predictors)
    # The response lacks some genes, the predictors have extra ones.
    response_frame = response_frame[~response_frame["gene_id"].isin(["Y00001W", "Y00002W"])]
    extra = predictors_frame.iloc[:3].assign(gene_id=["EXTRA1", "EXTRA2", "EXTRA3"])
    predictors_frame = pd.concat([predictors_frame.iloc[5:], extra])  # drops TF01..TF05
    response_frame.to_csv(response, index=False)
    predictors_frame.to_csv(predictors, index=False)
    blacklist = tmp_path / "blacklist.txt"
    blacklist.write_text("Y00004W\nEXTRA1\nY00001W\n")

    data = load_inputs(response, predictors, PERTURBED_TF, blacklist_file=blacklist)

    response_ids = set(response_frame["gene_id"])
    predictor_ids = set(predictors_frame["gene_id"])
    common = response_ids & predictor_ids
    blacklisted = {"Y00004W", "EXTRA1", "Y00001W", PERTURBED_TF}
    modeled = sorted(common - blacklisted)
    assert list(data.response.index) == modeled
    assert data.feature_counts == {
        "response_rows": len(response_ids),
        "predictor_rows": len(predictor_ids),
        "common": len(common),
        "blacklisted_removed": len(common & blacklisted),
        "modeled": len(modeled),
    }
    # The pTF's own row is absent from the predictors here, so only Y00004W is removed.
    assert data.feature_counts["blacklisted_removed"] == 1


def test_legacy_two_column_response(tmp_path: Path, files: tuple[Path, Path]) -> None:
    response, predictors = files
    legacy = tmp_path / "legacy.csv"
    frame = pd.read_csv(response)[["gene_id", "TF03"]].rename(columns={"TF03": "log2fc"})
    frame.to_csv(legacy, index=False)
    data = load_inputs(legacy, predictors, PERTURBED_TF)
    reference = load_inputs(response, predictors, PERTURBED_TF)
    pd.testing.assert_series_equal(data.response, reference.response)
    assert data.response.name == PERTURBED_TF
    assert len(data.warnings) == 1
    assert "'log2fc'" in data.warnings[0] and "\n" not in data.warnings[0]


def test_unknown_exclude_variable_is_a_warning(files: tuple[Path, Path]) -> None:
    response, predictors = files
    data = load_inputs(
        response,
        predictors,
        PERTURBED_TF,
        add_model_variables=["TF02"],
        exclude_interactor_variables=["TF04", "batch_effect", "exclude_all"],
    )
    assert len(data.warnings) == 1
    assert "--exclude_interactor_variables" in data.warnings[0]
    assert "'batch_effect'" in data.warnings[0]
    assert "exclude_all" not in data.warnings[0]
    assert "TF04" not in data.warnings[0]


def test_exclude_all_gives_no_warning(files: tuple[Path, Path]) -> None:
    data = load_inputs(*files, PERTURBED_TF, exclude_interactor_variables=["exclude_all"])
    assert data.warnings == ()


def test_bad_values_outside_modeled_rows_are_fine(tmp_path: Path, files: tuple[Path, Path]) -> None:
    response, predictors = files
    response_frame = pd.read_csv(response, dtype={"TF01": object})
    predictors_frame = pd.read_csv(predictors, dtype={"TF02": object})
    # The pTF's own row is always dropped; Y00008W is blacklisted; ONLY_HERE is not common.
    response_frame.loc[response_frame["gene_id"] == PERTURBED_TF, "TF03"] = np.nan
    predictors_frame.loc[predictors_frame["gene_id"] == PERTURBED_TF, "TF04"] = np.inf
    predictors_frame.loc[predictors_frame["gene_id"] == "Y00008W", "TF02"] = "n.d."
    extra = predictors_frame.iloc[[10]].assign(gene_id="ONLY_HERE", TF05=np.nan)
    pd.concat([predictors_frame, extra]).to_csv(predictors, index=False)
    # An unused response column may hold anything.
    response_frame["TF01"] = "text"
    response_frame.to_csv(response, index=False)
    blacklist = tmp_path / "blacklist.txt"
    blacklist.write_text("Y00008W\n")

    data = load_inputs(response, predictors, PERTURBED_TF, blacklist_file=blacklist)

    assert np.isfinite(data.response.to_numpy()).all()
    assert np.isfinite(data.predictors.to_numpy()).all()
    assert data.feature_counts["modeled"] == 38
    assert data.feature_counts["predictor_rows"] == 41


def test_read_table_keeps_text_columns_and_id_header(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text(
        'locus, A ,note\n YAL001C ,1.5,first\n"YAL002W",NA,"has, comma"\n\nYAL003W,-2e-3,\n'
    )
    table = read_table(path, "response")
    assert table.index.name == "locus"
    assert list(table.index) == ["YAL001C", "YAL002W", "YAL003W"]
    assert list(table.columns) == ["A", "note"]
    assert table["A"].dtype == np.float64
    assert np.isnan(table.loc["YAL002W", "A"])
    assert table.loc["YAL003W", "A"] == -2e-3
    assert table.loc["YAL002W", "note"] == "has, comma"


def test_read_table_reads_the_wanted_columns_of_a_whole_checked_file(tmp_path: Path) -> None:
    # One run needs one response column: only it is converted, but the file is checked whole.
    notes = ",".join(f"note{k}" for k in range(9))  # more text columns than Arrow is given
    lines = [f"gene,A,B,{notes}"] + [
        f"G{row},{row / 4},{-row}," + ",".join(f"n.d.{k}" for k in range(9)) for row in range(6)
    ]
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(lines) + "\n")
    whole = read_table(plain, "response")
    with mock.patch.object(reading, "_parse_any_csv", side_effect=AssertionError("record reader")):
        some = read_table(plain, "response", ["B"])  # Arrow, although 9 columns hold text
    pd.testing.assert_frame_equal(some, whole[["B"]])
    assert some["B"].tolist() == [-float(row) for row in range(6)]

    quoted = tmp_path / "quoted.csv"  # read record by record
    quoted.write_text(
        lines[0] + "\n" + "\n".join(f'"{line}"'.replace(",", '","') for line in lines[1:])
    )
    pd.testing.assert_frame_equal(
        read_table(quoted, "response", ["note3", "A"]), whole[["A", "note3"]]
    )

    parquet = tmp_path / "table.parquet"
    whole.to_parquet(parquet)  # ids in the index
    pd.testing.assert_frame_equal(read_table(parquet, "response", ["B"]), whole[["B"]])
    # A wanted column the file does not have: every column (the caller names what is missing).
    pd.testing.assert_frame_equal(read_table(plain, "response", ["B", "C"]), whole)

    ragged = tmp_path / "ragged.csv"
    ragged.write_text("\n".join([*lines[:3], lines[3] + ",extra", *lines[4:]]) + "\n")
    with pytest.raises(InputError, match=r"line 4 has 13 fields but the header has 12$"):
        read_table(ragged, "response", ["A"])
    duplicate_ids = tmp_path / "duplicate_ids.csv"
    duplicate_ids.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(InputError, match="duplicate feature ids: G0$"):
        read_table(duplicate_ids, "response", ["A"])


def test_prepare_reuses_read_tables(files: tuple[Path, Path]) -> None:
    response, predictors = files
    response_table = read_table(response, "response")
    predictors_table = read_table(predictors, "predictors")
    for tf in ["TF01", "TF02", "TF05"]:
        data = prepare_modeling_data(
            response_table,
            predictors_table,
            tf,
            response_path=response,
            predictors_path=predictors,
        )
        assert data.perturbed_tf == tf
        assert tf not in data.response.index
        pd.testing.assert_series_equal(
            data.response, load_inputs(response, predictors, tf).response
        )


def test_min_rows(tmp_path: Path, files: tuple[Path, Path]) -> None:
    response, predictors = files
    with pytest.raises(InputError, match="only 39 features .* at least 40"):
        load_inputs(response, predictors, PERTURBED_TF, min_rows=40)
    assert (
        load_inputs(response, predictors, PERTURBED_TF, min_rows=39).feature_counts["modeled"] == 39
    )


def test_empty_blacklist_file(tmp_path: Path) -> None:
    blacklist = tmp_path / "empty.txt"
    blacklist.write_text("")
    assert read_blacklist(blacklist) == []
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfY00001W\r\nY00002W\r\n")
    assert read_blacklist(bom) == ["Y00001W", "Y00002W"]


QUOTED_CASE_IDS = {
    "no_header_predictors",
    "empty_column_name",
    "duplicate_feature_ids_response",
    "duplicate_column_names",
    "empty_feature_id",
    "non_numeric_predictor",
    "empty_cell_predictor",
    "nan_response",
    "inf_predictor",
    "ragged_row",
}


@pytest.mark.parametrize(
    "case", [case for case in CASES if case.id in QUOTED_CASE_IDS], ids=lambda case: case.id
)
def test_quoted_csv_gives_the_same_message(case: BadInputCase, tmp_path: Path) -> None:
    kwargs = case.build(tmp_path)
    with pytest.raises(InputError) as plain:
        load_inputs(**kwargs)
    for path in (kwargs["response_file"], kwargs["predictors_file"]):
        rows = list(csv.reader(io.StringIO(path.read_text(), newline="")))
        buffer = io.StringIO()
        csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
        path.write_text(buffer.getvalue())
    with pytest.raises(InputError) as quoted:
        load_inputs(**kwargs)
    assert str(quoted.value) == str(plain.value)


def test_quoted_csv_reads_the_same(tmp_path: Path, files: tuple[Path, Path]) -> None:
    response, predictors = files
    quoted = tmp_path / "quoted_predictors.csv"
    pd.read_csv(predictors).to_csv(quoted, index=False, quoting=csv.QUOTE_ALL)
    assert '"' in quoted.read_text()
    assert_same_modeling_data(
        load_inputs(response, predictors, PERTURBED_TF),
        load_inputs(response, quoted, PERTURBED_TF),
    )
    pd.testing.assert_frame_equal(
        read_table(predictors, "predictors"), read_table(quoted, "predictors"), check_exact=True
    )


def test_predictors_checked_once_give_each_tf_the_same_rows(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    """A batch checks the predictors once (check_predictor_rows); each TF takes its rows from
    that and gets what checking its own rows gives, bit for bit, warnings and counts too."""
    response, predictors = files
    blacklist = tmp_path / "blacklist.txt"
    blacklist.write_text("Y00008W\nY00020W\n")
    response_table = read_table(response, "response")
    predictors_table = read_table(predictors, "predictors")
    banned = read_blacklist(blacklist)
    checked = check_predictor_rows(response_table, predictors_table, banned)
    assert checked is not None and len(checked.ids) == 40 - 2
    for tf in ["TF01", "TF03", "TF05"]:
        paths = dict(response_path=response, predictors_path=predictors, blacklist=banned)
        own = prepare_modeling_data(response_table, predictors_table, tf, **paths)
        shared = prepare_modeling_data(
            response_table, predictors_table, tf, **paths, checked=checked
        )
        assert_same_modeling_data(own, shared)
        assert shared.predictors.to_numpy().tobytes() == own.predictors.to_numpy().tobytes()


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("n.d.", "non-numeric value 'n.d.' at feature TF02"),  # a text column
        ("", "missing (empty or NaN) value at feature TF02"),  # columns all numbers
        ("-inf", "infinite value at feature TF02"),
    ],
)
def test_a_bad_value_in_one_tfs_own_row_fails_only_the_other_tfs(
    files: tuple[Path, Path], cell: str, problem: str
) -> None:
    """The shared check covers every TF's rows; a bad value on TF02's own row (which TF02 never
    models) makes it give up, and each TF then checks its own rows: TF02 runs, TF01 fails with
    the message it gives on its own."""
    response, predictors = files
    frame = pd.read_csv(predictors, dtype={"TF04": object})
    frame.loc[frame["gene_id"] == "TF02", "TF04"] = cell
    frame.to_csv(predictors, index=False)
    response_table = read_table(response, "response")
    predictors_table = read_table(predictors, "predictors")
    checked = check_predictor_rows(response_table, predictors_table)
    assert checked is None
    paths = dict(response_path=response, predictors_path=predictors, checked=checked)
    data = prepare_modeling_data(response_table, predictors_table, "TF02", **paths)
    assert np.isfinite(data.predictors.to_numpy()).all()
    with pytest.raises(InputError, match=re.escape(problem)):
        prepare_modeling_data(response_table, predictors_table, "TF01", **paths)


def test_a_text_column_is_read_by_arrow_as_the_csv_reader_reads_it() -> None:
    """A column with a cell Arrow will not read as a number is read again as text, and
    converted cell by cell as the record-by-record path converts it: the same frame."""
    from tfbp_dask.inputs.plain_csv import _parse_plain_csv
    from tfbp_dask.inputs.records import _parse_any_csv

    rows = [f"g{row},{row}.5,{-row}e-3,{row % 7}" for row in range(50)]
    rows[20] = "g20,n.d.,1.0,2"  # text: the column keeps its text
    rows[30] = "g30,1.5, NA ,2"  # padded token: a number column once converted cell by cell
    raw = ("gene_id,TF01,TF02,TF03\n" + "\n".join(rows) + "\n").encode()
    fast = _parse_plain_csv(raw)
    assert fast is not None
    assert fast["TF01"].dtype != np.float64 and fast["TF01"].iloc[20] == "n.d."
    assert fast["TF02"].dtype == np.float64 and np.isnan(fast["TF02"].iloc[30])
    pd.testing.assert_frame_equal(fast, _parse_any_csv(raw, "x"), check_exact=True)


def test_a_missing_tf_is_named_before_the_predictors_are_read(files, monkeypatch) -> None:
    # A misspelt TF costs one table's reading, not two: the predictors file, here one whose
    # reading fails, is not opened (runner.prepare looks for the pTF's response column first).
    from tfbp_dask import runner
    from tfbp_dask.config import WorkflowConfig

    response, predictors = files
    read = []

    def reading(path: Path, role: str, columns=None) -> pd.DataFrame:
        read.append(role)
        if role == "predictors":
            raise AssertionError("the predictors file was read")
        return read_table(path, role, columns)

    monkeypatch.setattr(runner, "read_table", reading)
    config = WorkflowConfig(response_file=response, predictors_file=predictors, perturbed_tf="TF99")
    with pytest.raises(InputError, match=r"response file .*no column named 'TF99'"):
        runner.prepare(config, runner.InputCache([config.perturbed_tf]))
    assert read == ["response"]
