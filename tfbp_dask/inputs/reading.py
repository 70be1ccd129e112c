"""Reading the input files: a response or predictors table (CSV, or Parquet by extension) and
the blacklist. Which reader reads a CSV file is chosen here (``_parse_csv``): Arrow for a plain,
sound file, else the record reader.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from pathlib import Path

import pandas as pd

from .files import _decode, _read_bytes
from .messages import _fail
from .parquet import _parse_parquet
from .plain_csv import _parse_plain_csv, _plain_shape_problem
from .records import _parse_any_csv

#: File name endings read as Parquet (case-insensitive); anything else is read as CSV.
PARQUET_SUFFIXES = (".parquet", ".pq")


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


def _parse_csv(raw: bytes, label: str, wanted: Collection[str] | None) -> pd.DataFrame:
    frame = _parse_plain_csv(raw, wanted)
    if frame is not None:
        return frame
    problem = _plain_shape_problem(raw)
    if problem is not None:
        raise _fail(label, problem)
    return _parse_any_csv(raw, label, wanted)
