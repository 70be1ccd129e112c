"""A table of bad inputs, each with the substrings its one-line error message must contain.

Every case writes its files into a given directory (starting from a small valid synthetic data
set) and returns keyword arguments for :func:`tfbp_dask.inputs.load_inputs`. The keys are named
after the command-line options (``response_file``, ``predictors_file``, ``perturbed_tf`` and
optionally ``blacklist_file``, ``add_model_variables``, ``exclude_interactor_variables``), so
the same table drives the input tests and the command-line tests (exit status 2).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tfbp_dask.datagen import make_dataset, write_dataset

PERTURBED_TF = "TF03"


@dataclass(frozen=True)
class BadInputCase:
    """One bad input.

    Attributes
    ----------
    id : str
        Test id.
    build : callable
        ``build(directory)`` writes the files and returns the keyword arguments of
        ``load_inputs``.
    expect : tuple of str
        Substrings that the one-line message must contain.
    """

    id: str
    build: Callable[[Path], dict]
    expect: tuple[str, ...]


def valid_files(directory: Path) -> tuple[Path, Path]:
    """Write the valid base data set (40 genes, TFs ``TF01``…``TF05``) and return its paths.

    Rows (after the header on line 1): ``TF01``…``TF05`` on lines 2–6, then ``Y00000W``…
    ``Y00034W`` on lines 7–41.
    """
    data = make_dataset(n_genes=40, n_tfs=5, seed=1)
    return write_dataset(data, directory / "data")


def _kwargs(response: Path, predictors: Path, **options: object) -> dict:
    return {
        "response_file": response,
        "predictors_file": predictors,
        "perturbed_tf": PERTURBED_TF,
        **options,
    }


def _read_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(), newline="")))


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue())


def _set_cell(path: Path, feature: str, column: str, text: str) -> None:
    rows = _read_rows(path)
    position = rows[0].index(column)
    for row in rows[1:]:
        if row[0] == feature:
            row[position] = text
    _write_rows(path, rows)


def _rename_column(path: Path, old: str, new: str) -> None:
    rows = _read_rows(path)
    rows[0] = [new if name == old else name for name in rows[0]]
    _write_rows(path, rows)


# --- builders -----------------------------------------------------------------------------


def _missing_response(tmp: Path) -> dict:
    _, predictors = valid_files(tmp)
    return _kwargs(tmp / "missing_response.csv", predictors)


def _missing_predictors(tmp: Path) -> dict:
    response, _ = valid_files(tmp)
    return _kwargs(response, tmp / "missing_predictors.csv")


def _missing_blacklist(tmp: Path) -> dict:
    return _kwargs(*valid_files(tmp), blacklist_file=tmp / "missing_blacklist.txt")


def _response_is_directory(tmp: Path) -> dict:
    _, predictors = valid_files(tmp)
    directory = tmp / "response_dir.csv"
    directory.mkdir()
    return _kwargs(directory, predictors)


def _blacklist_is_directory(tmp: Path) -> dict:
    directory = tmp / "blacklist_dir"
    directory.mkdir()
    return _kwargs(*valid_files(tmp), blacklist_file=directory)


def _empty_response(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    response.write_bytes(b"")
    return _kwargs(response, predictors)


def _blank_predictors(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    predictors.write_text("\n  \n\n")
    return _kwargs(response, predictors)


def _header_only_predictors(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    predictors.write_text(predictors.read_text().splitlines()[0] + "\n")
    return _kwargs(response, predictors)


def _one_column_response(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _write_rows(response, [row[:1] for row in _read_rows(response)])
    return _kwargs(response, predictors)


def _tab_separated_predictors(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    predictors.write_text(predictors.read_text().replace(",", "\t"))
    return _kwargs(response, predictors)


def _no_header_predictors(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _write_rows(predictors, _read_rows(predictors)[1:])
    return _kwargs(response, predictors)


def _empty_column_name(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _rename_column(predictors, "TF04", "")
    return _kwargs(response, predictors)


def _duplicate_ids_response(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    rows = _read_rows(response)
    rows += [row for row in rows if row[0] in ("Y00004W", "Y00009W")]
    _write_rows(response, rows)
    return _kwargs(response, predictors)


def _duplicate_ids_predictors(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    rows = _read_rows(predictors)
    rows[10][0] = "Y00001W"
    _write_rows(predictors, rows)
    return _kwargs(response, predictors)


def _duplicate_columns_predictors(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _rename_column(predictors, "TF05", "TF02")
    return _kwargs(response, predictors)


def _empty_feature_id(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    rows = _read_rows(response)
    rows[5][0] = "  "  # line 6
    _write_rows(response, rows)
    return _kwargs(response, predictors)


def _ptf_missing_in_response(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _rename_column(response, "TF03", "tf03")
    return _kwargs(response, predictors)


def _ptf_missing_in_predictors(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _rename_column(predictors, "TF03", "TF3")
    return _kwargs(response, predictors)


def _non_numeric_predictor(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _set_cell(predictors, "Y00007W", "TF02", "abc")
    return _kwargs(response, predictors)


def _non_numeric_response(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _set_cell(response, "Y00011W", "TF03", "high")
    return _kwargs(response, predictors)


def _empty_cell_predictor(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _set_cell(predictors, "Y00005W", "TF04", "")
    return _kwargs(response, predictors)


def _nan_response(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _set_cell(response, "Y00012W", "TF03", "NaN")
    return _kwargs(response, predictors)


def _inf_predictor(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _set_cell(predictors, "Y00020W", "TF01", "inf")
    return _kwargs(response, predictors)


def _inf_response(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    _set_cell(response, "Y00021W", "TF03", "-inf")
    return _kwargs(response, predictors)


def _no_common_features(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    rows = _read_rows(predictors)
    for row in rows[1:]:
        row[0] = row[0].lower()
    _write_rows(predictors, rows)
    return _kwargs(response, predictors)


def _too_few_rows(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    ids = [row[0] for row in _read_rows(response)[1:]]
    kept = ["Y00001W", "Y00002W", "Y00003W"]
    blacklist = tmp / "blacklist.txt"
    blacklist.write_text("\n".join(i for i in ids if i not in kept) + "\n")
    return _kwargs(response, predictors, blacklist_file=blacklist)


def _unknown_add_variable(tmp: Path) -> dict:
    return _kwargs(*valid_files(tmp), add_model_variables=["TF02", "TF99"])


def _ragged_row(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    rows = _read_rows(predictors)
    rows[4] = rows[4][:-1]  # line 5
    _write_rows(predictors, rows)
    return _kwargs(response, predictors)


def _unterminated_quote(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    lines = response.read_text().splitlines()
    lines[-1] = '"' + lines[-1]
    response.write_text("\n".join(lines) + "\n")
    return _kwargs(response, predictors)


def _non_utf8_predictors(tmp: Path) -> dict:
    response, predictors = valid_files(tmp)
    raw = predictors.read_bytes().replace(b"Y00006W", b"Y00006\xe9")  # line 13
    predictors.write_bytes(raw)
    return _kwargs(response, predictors)


def _non_utf8_blacklist(tmp: Path) -> dict:
    blacklist = tmp / "blacklist.txt"
    blacklist.write_bytes(b"Y00001W\nY0000\xff2W\n")
    return _kwargs(*valid_files(tmp), blacklist_file=blacklist)


def _corrupt_parquet(tmp: Path) -> dict:
    response, _ = valid_files(tmp)
    predictors = tmp / "predictors.parquet"
    predictors.write_bytes(b"PAR1 this is not really a parquet file PAR1")
    return _kwargs(response, predictors)


def _parquet_duplicate_ids(tmp: Path) -> dict:
    import pandas as pd

    response, predictors = valid_files(tmp)
    frame = pd.read_csv(response)
    frame.loc[3, "gene_id"] = "Y00030W"
    parquet = tmp / "response.pq"
    frame.to_parquet(parquet, index=False)
    return _kwargs(parquet, predictors)


CASES: list[BadInputCase] = [
    BadInputCase(
        "missing_response_file",
        _missing_response,
        ("response file", "missing_response.csv", "does not exist"),
    ),
    BadInputCase(
        "missing_predictors_file",
        _missing_predictors,
        ("predictors file", "missing_predictors.csv", "does not exist"),
    ),
    BadInputCase(
        "missing_blacklist_file",
        _missing_blacklist,
        ("blacklist file", "missing_blacklist.txt", "does not exist"),
    ),
    BadInputCase(
        "response_is_directory", _response_is_directory, ("response file", "is a directory")
    ),
    BadInputCase(
        "blacklist_is_directory", _blacklist_is_directory, ("blacklist file", "is a directory")
    ),
    BadInputCase("empty_response_file", _empty_response, ("response file", "is empty")),
    BadInputCase("blank_predictors_file", _blank_predictors, ("predictors file", "is empty")),
    BadInputCase(
        "header_only_predictors", _header_only_predictors, ("predictors file", "no data rows")
    ),
    BadInputCase("one_column_response", _one_column_response, ("response file", "one column")),
    BadInputCase(
        "tab_separated_predictors",
        _tab_separated_predictors,
        ("predictors file", "one column", "tab-separated"),
    ),
    BadInputCase(
        "no_header_predictors", _no_header_predictors, ("predictors file", "no header", "line 1")
    ),
    BadInputCase("empty_column_name", _empty_column_name, ("predictors file", "empty column name")),
    BadInputCase(
        "duplicate_feature_ids_response",
        _duplicate_ids_response,
        ("response file", "duplicate feature ids", "Y00004W", "Y00009W"),
    ),
    BadInputCase(
        "duplicate_feature_ids_predictors",
        _duplicate_ids_predictors,
        ("predictors file", "duplicate feature ids", "Y00001W"),
    ),
    BadInputCase(
        "duplicate_column_names",
        _duplicate_columns_predictors,
        ("predictors file", "duplicate column names", "TF02"),
    ),
    BadInputCase(
        "empty_feature_id", _empty_feature_id, ("response file", "empty feature id", "line 6")
    ),
    BadInputCase(
        "ptf_missing_in_response",
        _ptf_missing_in_response,
        ("response file", "'TF03'", "close matches", "'tf03'"),
    ),
    BadInputCase(
        "ptf_missing_in_predictors",
        _ptf_missing_in_predictors,
        ("predictors file", "'TF03'", "close matches", "'TF3'"),
    ),
    BadInputCase(
        "non_numeric_predictor",
        _non_numeric_predictor,
        ("predictors file", "'TF02'", "non-numeric", "'abc'", "Y00007W"),
    ),
    BadInputCase(
        "non_numeric_response",
        _non_numeric_response,
        ("response file", "'TF03'", "non-numeric", "'high'", "Y00011W"),
    ),
    BadInputCase(
        "empty_cell_predictor",
        _empty_cell_predictor,
        ("predictors file", "'TF04'", "missing", "Y00005W"),
    ),
    BadInputCase("nan_response", _nan_response, ("response file", "'TF03'", "missing", "Y00012W")),
    BadInputCase(
        "inf_predictor", _inf_predictor, ("predictors file", "'TF01'", "infinite", "Y00020W")
    ),
    BadInputCase("inf_response", _inf_response, ("response file", "'TF03'", "infinite", "Y00021W")),
    BadInputCase(
        "no_common_features",
        _no_common_features,
        ("response file", "no feature ids in common", "predictors file"),
    ),
    BadInputCase(
        "too_few_rows_after_blacklist",
        _too_few_rows,
        ("response file", "only 3 features", "at least 4", "4-fold"),
    ),
    BadInputCase(
        "unknown_add_model_variable",
        _unknown_add_variable,
        ("predictors file", "--add_model_variables", "'TF99'"),
    ),
    BadInputCase("ragged_row", _ragged_row, ("predictors file", "line 5", "fields")),
    BadInputCase(
        "unterminated_quote", _unterminated_quote, ("response file", "not valid CSV", "line 41")
    ),
    BadInputCase(
        "non_utf8_predictors",
        _non_utf8_predictors,
        ("predictors file", "not valid UTF-8", "0xe9", "line 13"),
    ),
    BadInputCase(
        "non_utf8_blacklist", _non_utf8_blacklist, ("blacklist file", "not valid UTF-8", "line 2")
    ),
    BadInputCase(
        "corrupt_parquet", _corrupt_parquet, ("predictors file", "predictors.parquet", "Parquet")
    ),
    BadInputCase(
        "parquet_duplicate_ids",
        _parquet_duplicate_ids,
        ("response file", "response.pq", "duplicate feature ids", "Y00030W"),
    ),
]
