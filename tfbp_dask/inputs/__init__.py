"""Reading, validating and aligning the input tables.

This package owns everything between the paths the user gave and the rows that are modeled:

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
(``plain_csv._parse_plain_csv``).
Conventions, where the format leaves room: lines end at ``\n``, ``\r\n`` or ``\r`` (in the
tables and the blacklist alike); surrounding whitespace of feature ids, column names and cells
is ignored; lines that are blank (or hold only empty cells) are skipped; the cells that
``pandas.read_csv`` reads as missing (``""``, ``NA``, ``NaN``, ``null``, …) are missing values;
a number reads as the float64 nearest to it, as Python's ``float()`` reads it.

Modules: ``reading`` (the files, and which reader reads a CSV file), ``files`` (bytes, UTF-8
text, the columns converted), ``records`` (the record reader), ``plain_csv`` (the plain-file
rules, Arrow's reader), ``parquet``; ``cells`` (what a cell means), ``checks`` (column names,
feature ids, record widths, values), ``messages``; ``aligning`` (the response column,
alignment, the checked rows of a TF or a batch), ``loading`` (:func:`load_inputs`).
"""

from __future__ import annotations

from .aligning import (
    CheckedPredictors,
    CheckedRows,
    ModelingData,
    check_predictor_rows,
    prepare_modeling_data,
)
from .aligning import response_column as response_column
from .loading import load_inputs
from .reading import PARQUET_SUFFIXES, read_blacklist, read_table

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
