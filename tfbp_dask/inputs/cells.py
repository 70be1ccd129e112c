"""What a cell means: the missing-value tokens, a cell or a text as a number, which dtypes are
numbers already, and a column of text cells as float64 when every cell is a number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

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
