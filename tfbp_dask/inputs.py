"""Reading, validating and aligning the input tables.

This room owns everything between the paths the user gave and the rows that are modeled:

* reading the response and predictors tables (CSV, or Parquet by extension) and the blacklist;
* every check on them, each failing with one line (:class:`~tfbp_dask.errors.InputError`)
  that names the file, the problem and the first few offending ids, columns or lines;
* the choice of the response column (the one named after the perturbed TF, or the single data
  column of an older two-column response file, with a warning);
* alignment of the two tables on their common feature ids, the blacklist (which always holds the
  perturbed TF's own id) and the row order (feature id, ascending, plain string order).

It does not build design terms (``design.py`` does). Reading and preparing are separate so
that a batch of many perturbed TFs reads each file once (:func:`read_table`) and prepares the
rows per TF (:func:`prepare_modeling_data`). One TF's run converts only its own column of the
response file (``read_table``'s ``columns``), after checking the whole file as a batch does.

CSV records are read by the standard library's ``csv`` reader (RFC 4180 quoting, strict: a
quote must close a field), which also tells the line each record ends on for the messages. A
plain, sound file (no quotes; numbers, and at most a few text columns) is read by Arrow's
CSV reader instead, into the same frame bit for bit, in a tenth of the time
(``_parse_plain_csv``).
Conventions, where the format leaves room: lines end at ``\n``, ``\r\n`` or ``\r`` (in the
tables and the blacklist alike); surrounding whitespace of feature ids, column names and cells
is ignored; lines that are blank (or hold only empty cells) are skipped; the cells that
``pandas.read_csv`` reads as missing (``""``, ``NA``, ``NaN``, ``null``, …) are missing values;
a number reads as the float64 nearest to it, as Python's ``float()`` reads it.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfbp_dask.errors import InputError, check_input_file

__all__ = [
    "PARQUET_SUFFIXES",
    "CheckedPredictors",
    "CheckedRows",
    "ModelingData",
    "check_predictor_rows",
    "load_inputs",
    "prepare_modeling_data",
    "read_blacklist",
    "read_table",
]

logger = logging.getLogger(__name__)

#: File name endings read as Parquet (case-insensitive); anything else is read as CSV.
PARQUET_SUFFIXES = (".parquet", ".pq")

# The strings pandas.read_csv reads as missing by default, so that a file means the same here
# as in a notebook.
_NA_TOKENS = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)
_PREVIEW_ITEMS = 5
# Columns with text that Arrow may hand back before the file is read record by record instead.
_MAX_TEXT_COLUMNS = 8
_MAX_ITEM_CHARS = 40


@dataclass(frozen=True, eq=False)
class ModelingData:
    """The aligned, validated rows of one perturbed TF, ready for the design matrix.

    Attributes
    ----------
    perturbed_tf : str
        The perturbed TF (pTF).
    response : Series of shape (n_features,)
        float64 response values; index = modeled feature ids, ascending; name = the pTF.
    predictors : DataFrame of shape (n_features, n_predictors)
        float64 binding values; same index as ``response``; columns = every predictor column in
        file order, the pTF's included.
    feature_counts : dict of str to int
        ``response_rows``, ``predictor_rows``, ``common`` (ids in both files),
        ``blacklisted_removed`` (common ids removed by the blacklist, the pTF's own id included)
        and ``modeled``.
    warnings : tuple of str
        One-line warnings raised while preparing (also logged at WARNING).
    """

    perturbed_tf: str
    response: pd.Series
    predictors: pd.DataFrame
    feature_counts: dict[str, int]
    warnings: tuple[str, ...] = ()
    rows: CheckedRows | None = None  # where ``predictors`` came from, in a batch


@dataclass(frozen=True, eq=False)
class CheckedRows:
    """A TF's predictor values as rows of a batch's checked predictors.

    The cluster already holds those (``Executor.shared``): a worker makes the
    TF's design matrix and processed predictors table from them and ``keep``,
    so the client sends neither.
    """

    checked: CheckedPredictors
    keep: np.ndarray | None  # boolean mask over ``checked.ids``; None: every row


@dataclass(frozen=True, eq=False)
class CheckedPredictors:
    """A predictors table's values on a set of rows, every column converted and checked clean.

    A batch makes it once (:func:`check_predictor_rows`) for the rows every TF may model (the
    ids both tables share, less the blacklist); each TF then takes its rows from it instead of
    converting and checking all columns again (``prepare_modeling_data(checked=…)``).
    """

    ids: pd.Index
    columns: tuple[str, ...]
    values: np.ndarray  # float64, (len(ids), len(columns))
    # How the rows were found, so that a TF of the same tables takes its rows without
    # matching thousands of ids again (``_rows_from_checked``).
    tables: tuple[pd.DataFrame, pd.DataFrame]  # (response, predictors)
    blacklist: frozenset[str]
    response_rows: np.ndarray  # each id's row in the response table
    counts: tuple[int, int, int, int]  # response, predictor, common, blacklisted


# ---------------------------------------------------------------------------------------------
# Public functions


def read_table(path: Path, role: str, columns: Collection[str] | None = None) -> pd.DataFrame:
    """Read a response or predictors table and check its structure.

    Parameters
    ----------
    path : Path
        A CSV file, or a Parquet file if the name ends with ``.parquet`` or ``.pq``. The first
        column holds the feature ids, whatever its header; a UTF-8 byte order mark is ignored.
        A Parquet file written from a pandas frame with the ids in its index is read too (an
        unnamed integer index next to a text first column is row numbers, not ids).
    role : str
        ``"response"`` or ``"predictors"``; messages start with ``"{role} file {path}: "``.
    columns : collection of str, optional
        The data columns wanted (one run's response file: the perturbed TF's). When the file
        has each of them, only they are converted and returned; the whole file is checked all
        the same, so that the same file fails with the same message either way. Otherwise, and
        by default, every column is.

    Returns
    -------
    DataFrame
        Index = the feature ids as strings, named as the first column's header; columns = the
        other columns in file order (those of ``columns`` only, see above). A CSV column
        whose cells are all numbers or missing is float64; any other column keeps its text,
        so that :func:`prepare_modeling_data` can name the offending value if the column is
        used. Values are not required to be numeric here.

    Raises
    ------
    InputError
        Missing, unreadable or empty file; a directory; not UTF-8; malformed CSV or Parquet;
        no header or no data rows; fewer than two columns; empty or duplicate column names;
        rows with the wrong number of fields; empty or duplicate feature ids.
    """
    path = Path(path)
    label = f"{role} file {path}"
    raw = _read_bytes(path, role, label, allow_empty=False)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _parse_parquet(raw, label, columns)
    return _parse_csv(raw, label, columns)


def read_blacklist(path: Path) -> list[str]:
    """Read a blacklist: one feature id per line.

    Parameters
    ----------
    path : Path
        A UTF-8 text file. Lines end at ``\n``, ``\r\n`` or ``\r`` (as in the tables, so that
        any feature id can be listed); surrounding whitespace and blank lines are ignored; an
        empty file is an empty blacklist.

    Returns
    -------
    list of str
        The ids in file order, each once.

    Raises
    ------
    InputError
        Missing or unreadable file, a directory, or bytes that are not UTF-8.
    """
    path = Path(path)
    label = f"blacklist file {path}"
    text = _decode(_read_bytes(path, "blacklist", label, allow_empty=True), label)
    # Not str.splitlines(): it also splits at \x1c-\x1e, \x85, \u2028, … which may be part of
    # an id in a table.
    ids = dict.fromkeys(line.strip() for line in io.StringIO(text, newline=""))
    ids.pop("", None)
    return list(ids)


def response_column(
    response_table: pd.DataFrame, perturbed_tf: str, response_path: Path | str
) -> tuple[int, str | None]:
    """Position of the pTF's column in the response table, and a warning if it is a guess.

    The column named after the pTF; else, in the older two-column format (one data column),
    that column, with a warning saying so.

    Raises
    ------
    InputError
        No column is named after the pTF and there are several (close matches are listed).
    """
    label = f"response file {response_path}"
    columns = [str(column) for column in response_table.columns]
    if perturbed_tf in columns:
        return columns.index(perturbed_tf), None
    if len(columns) == 1:
        return 0, (
            f"{label}: its only data column, {_quote(columns[0])}, is not named after the "
            f"perturbed TF {_quote(perturbed_tf)}; using it as the response (older two-column "
            "response format)"
        )
    raise _fail(label, _missing_column_problem(perturbed_tf, columns, "the perturbed TF"))


def prepare_modeling_data(
    response_table: pd.DataFrame,
    predictors_table: pd.DataFrame,
    perturbed_tf: str,
    *,
    response_path: Path | str,
    predictors_path: Path | str,
    blacklist: Iterable[str] = (),
    add_model_variables: Sequence[str] = (),
    exclude_interactor_variables: Sequence[str] = (),
    min_rows: int = 4,
    checked: CheckedPredictors | None = None,
) -> ModelingData:
    """Select the response column, align the tables and check the values that will be used.

    Parameters
    ----------
    response_table, predictors_table : DataFrame
        Tables as returned by :func:`read_table` (feature ids as a unique string index).
    perturbed_tf : str
        The pTF: the response column's header (exact, case-sensitive) and a predictor column.
    response_path, predictors_path : Path or str
        Where the tables came from, for messages.
    blacklist : iterable of str, optional
        Feature ids to leave out. The pTF's own id is always left out too.
    add_model_variables : sequence of str, optional
        Names that must be predictor columns (``--add_model_variables``).
    exclude_interactor_variables : sequence of str, optional
        Names that should be predictor columns; unknown ones give a warning only. The word
        ``exclude_all`` is not a column name and is never warned about.
    min_rows : int, default 4
        Fewest modeled rows accepted (4-fold stratified cross-validation needs 4).
    checked : CheckedPredictors, optional
        These tables' predictor values, already checked on the rows every TF may model (a
        batch's, ``check_predictor_rows`` with the same blacklist): the TF's rows are taken
        from them. Without it, or when it was made from other tables, every id is matched
        and every column converted and checked here.

    Returns
    -------
    ModelingData

    Raises
    ------
    InputError
        pTF column missing (close matches are listed), unknown ``add_model_variables``, no
        common feature ids, fewer than ``min_rows`` modeled rows, or a non-numeric, missing or
        infinite value in the response column or any predictor column over the modeled rows.
    """
    response_label = f"response file {response_path}"
    predictors_label = f"predictors file {predictors_path}"
    response_columns = [str(column) for column in response_table.columns]
    predictor_columns = [str(column) for column in predictors_table.columns]
    response_position, warning = response_column(response_table, perturbed_tf, response_path)
    warnings = [] if warning is None else [warning]
    if perturbed_tf not in predictor_columns:
        raise _fail(
            predictors_label,
            _missing_column_problem(perturbed_tf, predictor_columns, "the perturbed TF"),
        )

    known = set(predictor_columns)
    unknown_add = [name for name in dict.fromkeys(add_model_variables) if name not in known]
    if unknown_add:
        raise _fail(
            predictors_label,
            _unknown_variables_problem("--add_model_variables", unknown_add, predictor_columns),
        )
    unknown_exclude = [
        name
        for name in dict.fromkeys(exclude_interactor_variables)
        if name != "exclude_all" and name not in known
    ]
    if unknown_exclude:
        warnings.append(
            f"{predictors_label}: --exclude_interactor_variables "
            f"{_not_columns(unknown_exclude)}; ignored"
        )

    aligned = _rows_from_checked(
        checked, response_table, predictors_table, blacklist, perturbed_tf, min_rows
    )
    if aligned is None:  # aligned anew: every id matched, every column converted and checked
        index, response_rows, predictor_rows, feature_counts = _align(
            response_table,
            predictors_table,
            perturbed_tf,
            blacklist,
            min_rows,
            response_label,
            predictors_label,
        )
        rows = None
    else:
        index, response_rows, matrix, feature_counts, rows = aligned
    response_values, problem = _checked_column(
        response_table.iloc[response_rows, response_position],
        response_columns[response_position],
        index,
    )
    if problem is not None:
        raise _fail(response_label, problem)
    if aligned is None:
        matrix = _checked_predictors(
            predictors_table, predictor_rows, predictor_columns, index, predictors_label
        )
    # The warnings are returned, not logged here: the run logs them into its own log file.
    logger.debug("features for %s: %s", perturbed_tf, feature_counts)
    return ModelingData(
        perturbed_tf=perturbed_tf,
        response=pd.Series(response_values, index=index, name=perturbed_tf, dtype=np.float64),
        predictors=pd.DataFrame(matrix, index=index, columns=pd.Index(predictor_columns)),
        feature_counts=feature_counts,
        warnings=tuple(warnings),
        rows=rows,
    )


def _align(
    response_table: pd.DataFrame,
    predictors_table: pd.DataFrame,
    perturbed_tf: str,
    blacklist: Iterable[str],
    min_rows: int,
    response_label: str,
    predictors_label: str,
) -> tuple[pd.Index, np.ndarray, np.ndarray, dict[str, int]]:
    """The modeled ids, their rows in each table and the feature counts (SPEC §2)."""
    response_ids = _id_strings(response_table.index)
    predictor_ids = _id_strings(predictors_table.index)
    # read_table guarantees this; tables built elsewhere get the same message.
    _check_ids(response_label, response_ids, lambda: _row_places(len(response_ids)))
    _check_ids(predictors_label, predictor_ids, lambda: _row_places(len(predictor_ids)))
    common = set(response_ids).intersection(predictor_ids)
    if not common:
        raise _fail(
            response_label,
            f"no feature ids in common with {predictors_label} (response ids look like "
            f"{', '.join(_short(i) for i in response_ids[:3])}; predictor ids look like "
            f"{', '.join(_short(i) for i in predictor_ids[:3])})",
        )
    excluded = set(blacklist) | {perturbed_tf}
    modeled_ids = sorted(common - excluded)
    feature_counts = {
        "response_rows": len(response_ids),
        "predictor_rows": len(predictor_ids),
        "common": len(common),
        "blacklisted_removed": len(common & excluded),
        "modeled": len(modeled_ids),
    }
    if len(modeled_ids) < min_rows:
        raise _fail(
            response_label,
            f"only {_plural(len(modeled_ids), 'feature')} left to model after alignment with "
            f"{predictors_label} ({feature_counts['common']} in common, "
            f"{feature_counts['blacklisted_removed']} removed by the blacklist and the perturbed "
            f"TF's own id); at least {min_rows} are needed for 4-fold stratified "
            "cross-validation",
        )
    return (
        pd.Index(modeled_ids, name=response_table.index.name),
        pd.Index(response_ids).get_indexer(modeled_ids),
        pd.Index(predictor_ids).get_indexer(modeled_ids),
        feature_counts,
    )


def _checked_predictors(
    predictors_table: pd.DataFrame,
    rows: np.ndarray,
    columns: list[str],
    feature_ids: Sequence[str],
    label: str,
) -> np.ndarray:
    """Every predictor column on ``rows`` as float64; the first bad column's problem raised."""
    if all(_is_plain_numeric(dtype) for dtype in predictors_table.dtypes):
        # The common case at once: every column already numbers (a plain file) and finite.
        matrix = predictors_table.to_numpy(dtype=np.float64, na_value=np.nan)[rows]
        if np.isfinite(matrix).all():
            return matrix
    values: list[np.ndarray] = []
    problems: list[tuple[str, str]] = []
    for position, column in enumerate(columns):
        column_values, problem = _checked_column(
            predictors_table.iloc[rows, position], column, feature_ids
        )
        values.append(column_values)
        if problem is not None:
            problems.append((column, problem))
    if problems:
        message = problems[0][1]
        if len(problems) > 1:
            others = [_quote(column) for column, _ in problems[1:]]
            message += f"; other columns with bad values: {_preview(others)}"
        raise _fail(label, message)
    return np.column_stack(values)


def check_predictor_rows(
    response_table: pd.DataFrame,
    predictors_table: pd.DataFrame,
    blacklist: Iterable[str] = (),
) -> CheckedPredictors | None:
    """The predictors' values on the rows any TF may model, or None if a value there is bad.

    The rows are the feature ids both tables share, less the blacklist (a TF's modeled rows
    are these less its own id). None (some column has a missing, infinite or non-numeric
    value on them) leaves every TF to check its own rows and report what it finds.
    """
    predictor_ids = _id_strings(predictors_table.index)
    response_ids = _id_strings(response_table.index)
    common = set(predictor_ids).intersection(response_ids)
    blacklist = frozenset(blacklist)
    rows = sorted(common - blacklist)
    positions = pd.Index(predictor_ids).get_indexer(rows)
    columns = [str(column) for column in predictors_table.columns]
    try:
        matrix = _checked_predictors(predictors_table, positions, columns, rows, "predictors")
    except InputError:  # each TF checks its own rows and names what it finds
        return None
    return CheckedPredictors(
        pd.Index(rows, name=response_table.index.name),
        tuple(columns),
        matrix,
        tables=(response_table, predictors_table),
        blacklist=blacklist,
        response_rows=pd.Index(response_ids).get_indexer(rows),
        counts=(len(response_ids), len(predictor_ids), len(common), len(common & blacklist)),
    )


def load_inputs(
    response_file: Path,
    predictors_file: Path,
    perturbed_tf: str,
    blacklist_file: Path | None = None,
    add_model_variables: Sequence[str] = (),
    exclude_interactor_variables: Sequence[str] = (),
    min_rows: int = 4,
) -> ModelingData:
    """Read the input files and prepare the modeled rows of one perturbed TF.

    :func:`read_table` on the response table (its pTF column only) and :func:`response_column`
    on it (a misspelt TF is named before the second table is read), then :func:`read_table`
    on the predictors table, :func:`read_blacklist` if a blacklist is given, and
    :func:`prepare_modeling_data`; see those for the rules.

    Parameters
    ----------
    response_file, predictors_file : Path
        CSV or Parquet tables, feature ids in the first column.
    perturbed_tf : str
        The perturbed TF.
    blacklist_file : Path, optional
        One feature id per line.
    add_model_variables, exclude_interactor_variables : sequence of str, optional
        As for :func:`prepare_modeling_data`.
    min_rows : int, default 4
        Fewest modeled rows accepted.

    Returns
    -------
    ModelingData

    Raises
    ------
    InputError
        For any bad input, with a one-line message.
    """
    response_table = read_table(Path(response_file), "response", [perturbed_tf])
    response_column(response_table, perturbed_tf, response_file)
    predictors_table = read_table(Path(predictors_file), "predictors")
    blacklist = read_blacklist(Path(blacklist_file)) if blacklist_file is not None else []
    return prepare_modeling_data(
        response_table,
        predictors_table,
        perturbed_tf,
        response_path=response_file,
        predictors_path=predictors_file,
        blacklist=blacklist,
        add_model_variables=add_model_variables,
        exclude_interactor_variables=exclude_interactor_variables,
        min_rows=min_rows,
    )


# ---------------------------------------------------------------------------------------------
# Reading


def _read_bytes(path: Path, role: str, label: str, *, allow_empty: bool) -> bytes:
    check_input_file(path, role)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise _fail(label, f"cannot be read ({err.strerror or err})") from err
    if not allow_empty and not raw.strip():
        raise _fail(label, "is empty")
    return raw


def _decode(raw: bytes, label: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = "it looks like UTF-16; save it as UTF-8"
        elif raw.startswith(b"\x1f\x8b"):
            hint = "it looks gzip-compressed; decompress it first"
        elif raw.startswith(b"PAR1"):
            hint = "it looks like Parquet; name it *.parquet"
        else:
            hint = "save it as UTF-8"
        raise _fail(
            label,
            f"is not valid UTF-8 text (byte 0x{raw[err.start]:02x} at line {line}); {hint}",
        ) from err


def _parse_csv(raw: bytes, label: str, wanted: Collection[str] | None) -> pd.DataFrame:
    frame = _parse_plain_csv(raw, wanted)
    if frame is not None:
        return frame
    problem = _plain_shape_problem(raw)
    if problem is not None:
        raise _fail(label, problem)
    return _parse_any_csv(raw, label, wanted)


def _kept_positions(names: Sequence[str], wanted: Collection[str] | None) -> list[int]:
    """Positions of the data columns converted (``read_table``'s ``columns``): the wanted ones
    if the names hold each, else all."""
    if wanted is not None and set(wanted) <= set(names[1:]):
        return [position for position, name in enumerate(names) if position and name in wanted]
    return list(range(1, len(names)))


def _parse_any_csv(raw: bytes, label: str, wanted: Collection[str] | None = None) -> pd.DataFrame:
    """Any CSV file, record by record: the frame, or its first problem in the documented order."""
    header, header_line, rows, lines = _csv_records(_decode(raw, label), label)
    if header is None:
        raise _fail(label, "is empty")

    names = [name.strip() for name in header]
    if len(names) < 2:
        raise _fail(label, _one_column_problem(header[0]))
    if all(_looks_numeric(name) for name in names[1:]):
        raise _fail(
            label,
            f"has no header line: line {header_line} looks like data "
            f"({_preview([_quote(name) for name in names])}); the first line must name the "
            "columns",
        )
    _check_column_names(label, names)
    if not rows:
        raise _fail(label, "has a header but no data rows")
    ragged = [(line, len(row)) for line, row in zip(lines, rows) if len(row) != len(names)]
    if ragged:
        raise _fail(label, _ragged_problem(ragged, len(names)))

    columns = list(zip(*rows))
    ids = [feature.strip() for feature in columns[0]]
    _check_ids(label, ids, lambda: [f"line {line}" for line in lines])
    kept = _kept_positions(names, wanted)
    values = {names[position]: _parse_cells(columns[position]) for position in kept}
    return pd.DataFrame(values, index=pd.Index(ids, name=names[0]))


def _parse_plain_csv(raw: bytes, wanted: Collection[str] | None = None) -> pd.DataFrame | None:
    """The frame ``_parse_csv`` makes of a plain, sound CSV file, read by Arrow; else None.

    Plain: no quote and no NUL byte, a header line of distinct names. Sound: every record has
    the header's fields and every feature id is non-empty and unique. On such a file Arrow's
    reader (about 10x faster on a genome-scale table) gives the same frame, bit for bit. Its
    numbers are correctly rounded, as ``float()``'s are, and it refuses anything ``float()``
    might read otherwise (padding, underscores, other digits). A column with a cell it refuses
    is read again as text and converted as the standard library's path converts it
    (``_parse_cells``), up to ``_MAX_TEXT_COLUMNS`` of them. Anything else returns None, and
    the file is read record by record, which names its first problem in the documented order.
    Arrow parses every column (a ragged record is refused) but converts the kept ones only.
    """
    raw = _plain_bytes(raw)
    if raw is None or not _is_utf8(raw):  # Arrow checks only the columns it converts
        return None
    ends = [end for end in (raw.find(b"\n"), raw.find(b"\r")) if end >= 0]
    if not ends:
        return None
    names = _plain_header(raw[: min(ends)].decode("utf-8"))
    if names is None:
        return None
    kept = _kept_positions(names, wanted)
    table, text_positions = _arrow_table(raw, len(names), kept)
    if table is None or table.num_rows == 0:
        return None
    ids = [feature.strip() for feature in table.column(0).to_pylist()]
    if not all(ids) or len(set(ids)) != len(ids):
        return None
    # The number columns in one conversion (per-column calls each wait for the GIL again,
    # and the cluster's thread holds it meanwhile), then each text column in its place.
    numbers = table.drop_columns([_arrow_key(k) for k in (0, *text_positions)])
    frame = numbers.to_pandas()
    frame.columns = pd.Index([names[k] for k in kept if k not in text_positions])
    for position in text_positions:
        cells = _parse_cells(table.column(_arrow_key(position)).to_pylist())
        frame.insert(kept.index(position), names[position], cells)
    frame.index = pd.Index(ids, name=names[0])
    return frame


def _plain_bytes(raw: bytes) -> bytes | None:
    """A plain file's bytes without a leading UTF-8 BOM; None if it has a quote or a NUL byte
    (then only the csv module reads it as the rules say)."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    return None if b'"' in raw or b"\0" in raw else raw


def _is_utf8(raw: bytes) -> bool:
    """Whether the bytes are valid UTF-8 (ASCII checked first: 1 ms for 8 MB)."""
    if raw.isascii():
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _plain_header(line: str) -> list[str] | None:
    """The column names of a plain file's first line if the csv reader accepts them, else None.

    At least two; the data columns' names non-empty, distinct, not all numbers.
    """
    names = [name.strip() for name in line.split(",")]
    if (
        len(names) < 2
        or not all(names[1:])
        or len(set(names)) != len(names)
        or all(_looks_numeric(name) for name in names[1:])
    ):
        return None
    return names


def _plain_shape_problem(raw: bytes) -> str | None:
    """The ragged records a plain file's record-by-record reading would stop at, found by counting.

    In a file without quotes or NUL bytes, valid UTF-8, no line as long as the csv module's
    field limit and a header ``_plain_header`` accepts, every line (ended by ``\\n``,
    ``\\r\\n`` or ``\\r``) is one record whose fields are its commas plus one, and a line of
    commas and whitespace is a skipped blank record. The first problem ``_parse_any_csv`` names
    in such a file with a data record of another width is then this one, found without the csv
    module's per-field work (0.1 s on a genome-scale table). None for any other file.
    """
    raw = _plain_bytes(raw)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if max(map(len, lines)) >= csv.field_size_limit():
        return None
    names = _plain_header(lines[0])
    if names is None:
        return None
    widths = [  # a line that starts with neither whitespace nor a comma is not blank
        (number, line.count(",") + 1)
        for number, line in enumerate(lines[1:], start=2)
        if not (line[:1].isspace() or line[:1] in ",") or line.replace(",", "").strip()
    ]
    ragged = [(number, width) for number, width in widths if width != len(names)]
    return _ragged_problem(ragged, len(names)) if ragged else None


def _ragged_problem(ragged: list[tuple[int, int]], n_names: int) -> str:
    """The message for records (line, number of fields) whose width is not the header's."""
    line, n_fields = ragged[0]
    problem = f"line {line} has {n_fields} fields but the header has {n_names}"
    if len(ragged) > 1:
        problem += f"; other such lines: {_preview([str(line) for line, _ in ragged[1:]])}"
    return problem


def _arrow_key(position: int) -> str:
    """The name ``_arrow_table`` gives a file's column (its header is read separately)."""
    return f"c{position}"


def _arrow_table(raw: bytes, n_columns: int, kept: list[int]) -> tuple[Any, list[int]]:
    """Arrow's table of a plain file after its header (the ids, then the ``kept`` data columns
    in file order), and the kept columns it holds as text (positions, ascending).

    Ids are text; the other columns numbers, missing-value tokens null. Arrow stops at the
    first cell it cannot read as a number and names its column; that column is then read as
    text, up to ``_MAX_TEXT_COLUMNS`` times. None for anything else (ragged rows, …). Every
    column is parsed, so that a ragged record is refused, but only those kept are converted.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    keys = [_arrow_key(position) for position in range(n_columns)]
    included = [keys[position] for position in (0, *kept)]
    text_positions: list[int] = []
    while len(text_positions) <= _MAX_TEXT_COLUMNS:
        text = {keys[position] for position in (0, *text_positions)}
        try:
            table = pa_csv.read_csv(
                pa.py_buffer(raw),
                read_options=pa_csv.ReadOptions(column_names=keys, skip_rows=1),
                parse_options=pa_csv.ParseOptions(quote_char=False, ignore_empty_lines=True),
                convert_options=pa_csv.ConvertOptions(
                    column_types={k: pa.string() if k in text else pa.float64() for k in keys},
                    null_values=sorted(_NA_TOKENS),
                    strings_can_be_null=False,
                    include_columns=included,
                ),
            )
        except pa.ArrowInvalid as error:
            refused = re.match(r"In CSV column #(\d+): CSV conversion error", str(error))
            position = None if refused is None else int(refused[1])
            if position is None or position == 0 or position in text_positions:
                return None, text_positions
            text_positions = sorted([*text_positions, position])
            continue
        except (pa.ArrowException, ValueError):
            return None, text_positions
        return table, text_positions
    return None, text_positions


def _csv_records(text: str, label: str) -> tuple[list[str] | None, int, list[list[str]], list[int]]:
    """The header, its line, the data records and the line each ends on; blank records skipped."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line = 0
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if all(not cell.strip() for cell in row):
                continue
            if header is None:
                header, header_line = row, reader.line_num
            else:
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as err:
        raise _fail(label, f"is not valid CSV at line {reader.line_num}: {err}") from err
    return header, header_line, rows, lines


def _parse_parquet(raw: bytes, label: str, wanted: Collection[str] | None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # The names are checked before the table is read: pq.read_table() resolves columns by
        # name and fails on a duplicate with a message that does not say so.
        parquet_file = pq.ParquetFile(pa.BufferReader(raw))
        duplicated = _duplicates([str(name).strip() for name in parquet_file.schema_arrow.names])
        if duplicated:
            raise _fail(label, f"duplicate column names: {_preview(duplicated)}")
        frame = parquet_file.read().to_pandas()
        if _index_holds_ids(frame):
            frame = frame.reset_index()
    except InputError:
        raise
    except Exception as err:  # pyarrow raises many types (ArrowInvalid, OSError, …)
        raise _fail(label, f"cannot be read as Parquet ({_first_line(err)})") from err

    names = [str(name).strip() for name in frame.columns]
    if len(names) < 2:
        raise _fail(label, _one_column_problem(names[0] if names else ""))
    _check_column_names(label, names)
    if len(frame) == 0:
        raise _fail(label, "has no data rows")
    ids = ["" if _is_missing(feature) else str(feature).strip() for feature in frame.iloc[:, 0]]
    _check_ids(label, ids, lambda: _row_places(len(ids)))
    data = {}
    for position in _kept_positions(names, wanted):
        column = frame.iloc[:, position]
        data[names[position]] = (
            column.to_numpy(dtype=np.float64, na_value=np.nan)
            if _is_plain_numeric(column.dtype)
            else column.to_numpy(dtype=object)
        )
    return pd.DataFrame(data, index=pd.Index(ids, name=names[0]))


def _index_holds_ids(frame: pd.DataFrame) -> bool:
    """Whether a frame read from Parquet has its feature ids in its (pandas) index.

    A table written from a frame with a meaningful index (``frame.set_index("gene_id")``)
    keeps the ids there. Row numbers left over from sorting, sampling or filtering a frame
    before ``to_parquet()`` are an unnamed integer index; when the first column holds text,
    that column has the ids and the row numbers are dropped.
    """
    index = frame.index
    if isinstance(index, pd.RangeIndex):
        return False
    return not (
        index.nlevels == 1
        and index.name is None
        and pd.api.types.is_integer_dtype(index.dtype)
        and frame.shape[1] > 0
        and not _is_plain_numeric(frame.dtypes.iloc[0])
    )


def _one_column_problem(header: str) -> str:
    problem = "has only one column; expected feature ids followed by data columns"
    if "\t" in header:
        return problem + " (it looks tab-separated; use commas)"
    if ";" in header:
        return problem + " (it looks semicolon-separated; use commas)"
    return problem


def _check_column_names(label: str, names: list[str]) -> None:
    empty = [str(number) for number, name in enumerate(names, start=1) if number > 1 and not name]
    if empty:
        where = "column" if len(empty) == 1 else "columns"
        raise _fail(label, f"empty column name at {where} {_preview(empty)} of {len(names)}")
    duplicated = _duplicates(names)
    if duplicated:
        raise _fail(label, f"duplicate column names: {_preview(duplicated)}")


def _check_ids(label: str, ids: list[str], places: Callable[[], list[str]]) -> None:
    """No empty and no repeated id; ``places`` names the rows (made only for a message)."""
    if not all(ids):
        empty = [place for place, feature in zip(places(), ids) if not feature]
        raise _fail(label, f"empty feature id at {_preview(empty)}")
    if len(set(ids)) != len(ids):
        raise _fail(label, f"duplicate feature ids: {_preview(_duplicates(ids))}")


def _row_places(n_rows: int) -> list[str]:
    return [f"row {row}" for row in range(1, n_rows + 1)]


def _id_strings(index: pd.Index) -> list[str]:
    """The feature ids of ``index`` as Python strings (``tolist`` first: fast for Arrow)."""
    return [str(feature) for feature in index.tolist()]


def _parse_cells(cells: Sequence[str]) -> np.ndarray:
    """float64 values if every cell is a number or missing; else the cells' text (object)."""
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        pass
    values = np.empty(len(cells), dtype=np.float64)
    for position, cell in enumerate(cells):
        number = _text_to_float(cell)
        if number is None:
            return np.array([cell.strip() for cell in cells], dtype=object)
        values[position] = number
    return values


# ---------------------------------------------------------------------------------------------
# Values


def _checked_column(
    cells: pd.Series, column: str, feature_ids: list[str]
) -> tuple[np.ndarray, str | None]:
    """float64 values of ``cells`` and a one-line problem (non-numeric, missing, infinite)."""
    if _is_plain_numeric(cells.dtype):
        values = cells.to_numpy(dtype=np.float64, na_value=np.nan)
        non_numeric: list[int] = []
    else:
        raw_cells = cells.tolist()
        values = np.empty(len(raw_cells), dtype=np.float64)
        non_numeric = []
        for position, cell in enumerate(raw_cells):
            number = _cell_to_float(cell)
            if number is None:
                non_numeric.append(position)
                number = math.nan
            values[position] = number
        if non_numeric:
            if len(non_numeric) == 1:
                position = non_numeric[0]
                return values, (
                    f"column {_quote(column)} has non-numeric value {_quote(raw_cells[position])} "
                    f"at feature {_short(feature_ids[position])}"
                )
            shown = [
                f"{_short(feature_ids[position])} ({_quote(raw_cells[position])})"
                for position in non_numeric[:_PREVIEW_ITEMS]
            ]
            return values, (
                f"column {_quote(column)} has non-numeric values at features "
                f"{_preview(shown, total=len(non_numeric), shorten=False)}"
            )
    for mask, kind in (
        (np.isnan(values), "missing (empty or NaN)"),
        (np.isinf(values), "infinite"),
    ):
        positions = np.flatnonzero(mask)
        if positions.size:
            features = [feature_ids[position] for position in positions[:_PREVIEW_ITEMS]]
            noun = "value at feature" if positions.size == 1 else "values at features"
            return values, (
                f"column {_quote(column)} has {kind} {noun} "
                f"{_preview(features, total=int(positions.size))}"
            )
    return values, None


def _rows_from_checked(
    checked: CheckedPredictors | None,
    response_table: pd.DataFrame,
    predictors_table: pd.DataFrame,
    blacklist: Iterable[str],
    perturbed_tf: str,
    min_rows: int,
) -> tuple[pd.Index, np.ndarray, np.ndarray, dict[str, int], CheckedRows] | None:
    """A TF's modeled ids, response rows, predictor values, counts and their ``CheckedRows``.

    The same as aligning the tables anew: the checked rows are the ids both tables share less
    the blacklist, sorted; the TF's are those less its own id. None when ``checked`` was made
    from other tables or another blacklist, or too few rows are left (the full path then says
    what is wrong).
    """
    if (
        checked is None
        or checked.tables[0] is not response_table
        or checked.tables[1] is not predictors_table
        or checked.blacklist != frozenset(blacklist)
    ):
        return None
    keep = np.ones(len(checked.ids), dtype=bool)
    if perturbed_tf in checked.ids:
        keep[checked.ids.get_loc(perturbed_tf)] = False
    n_modeled = int(keep.sum())
    if n_modeled < min_rows:
        return None
    n_response, n_predictors, n_common, n_blacklisted = checked.counts
    own_id_removed = n_modeled < len(checked.ids)
    counts = {
        "response_rows": n_response,
        "predictor_rows": n_predictors,
        "common": n_common,
        "blacklisted_removed": n_blacklisted + int(own_id_removed),
        "modeled": n_modeled,
    }
    if not own_id_removed:
        rows = CheckedRows(checked, None)
        return checked.ids, checked.response_rows, checked.values.copy(), counts, rows
    rows = CheckedRows(checked, keep)
    return checked.ids[keep], checked.response_rows[keep], checked.values[keep], counts, rows


def _is_plain_numeric(dtype: object) -> bool:
    return (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    )


def _is_missing(cell: object) -> bool:
    if cell is None or cell is pd.NA or cell is pd.NaT:
        return True
    return isinstance(cell, float | np.floating) and math.isnan(cell)


def _text_to_float(text: str) -> float | None:
    text = text.strip()
    if text in _NA_TOKENS:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _cell_to_float(cell: object) -> float | None:
    """The number a cell holds, NaN if it is missing, None if it is not a number."""
    if _is_missing(cell):
        return math.nan
    if isinstance(cell, bool | np.bool_):
        return None
    if isinstance(cell, str):
        return _text_to_float(cell)
    try:
        return float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _looks_numeric(text: str) -> bool:
    number = _text_to_float(text)
    return number is not None and not math.isnan(number)


# ---------------------------------------------------------------------------------------------
# Messages


def _fail(label: str, problem: str) -> InputError:
    # One line whatever the offending values hold.
    return InputError(" ".join(f"{label}: {problem}".splitlines()))


def _short(text: object) -> str:
    text = str(text)
    if not text.isprintable():
        text = repr(text)[1:-1]
    if len(text) > _MAX_ITEM_CHARS:
        text = text[: _MAX_ITEM_CHARS - 3] + "..."
    return text


def _quote(text: object) -> str:
    return f"'{_short(text)}'"


def _preview(items: Sequence[str], total: int | None = None, *, shorten: bool = True) -> str:
    """The first few items, comma-separated, then "(N more)" if ``total`` exceeds them."""
    total = len(items) if total is None else total
    head = items[:_PREVIEW_ITEMS]
    shown = ", ".join(_short(item) for item in head) if shorten else ", ".join(head)
    hidden = total - min(len(items), _PREVIEW_ITEMS)
    return f"{shown} ({hidden} more)" if hidden > 0 else shown


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _duplicates(names: Sequence[str]) -> list[str]:
    counts = Counter(names)
    return [name for name in counts if counts[name] > 1]


def _close_matches(name: str, candidates: Sequence[str]) -> list[str]:
    """Names that differ from ``name`` only in case, else the few most similar ones."""
    folded_name = name.casefold()
    same_but_case = [candidate for candidate in candidates if candidate.casefold() == folded_name]
    if same_but_case:
        return same_but_case
    by_folded: dict[str, list[str]] = {}
    for candidate in candidates:
        by_folded.setdefault(candidate.casefold(), []).append(candidate)
    folded_matches = difflib.get_close_matches(folded_name, list(by_folded), n=3, cutoff=0.6)
    return [candidate for key in folded_matches for candidate in by_folded[key]][:3]


def _missing_column_problem(name: str, columns: Sequence[str], what: str) -> str:
    problem = f"no column named {_quote(name)} ({what}; names are case-sensitive)"
    matches = _close_matches(name, columns)
    if matches:
        return problem + f"; close matches: {', '.join(_quote(match) for match in matches)}"
    return problem + f"; columns are: {_preview([_quote(column) for column in columns])}"


def _unknown_variables_problem(option: str, unknown: list[str], columns: Sequence[str]) -> str:
    problem = f"{option} {_not_columns(unknown)}"
    matches = _close_matches(unknown[0], columns)
    if matches:
        return problem + (
            f"; close matches for {_quote(unknown[0])}: "
            f"{', '.join(_quote(match) for match in matches)}"
        )
    return problem + f"; predictor columns are: {_preview([_quote(c) for c in columns])}"


def _not_columns(names: Sequence[str]) -> str:
    quoted = _preview([_quote(name) for name in names])
    if len(names) == 1:
        return f"names a variable that is not a predictor column: {quoted}"
    return f"names {len(names)} variables that are not predictor columns: {quoted}"
