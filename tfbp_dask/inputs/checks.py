"""Checks of a table once read, each failing with one line: its column names and feature ids
(the same whichever reader made the table), records of another width than the header, and the
values of the columns that are modeled (non-numeric, missing, infinite). No check reads bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .cells import _cell_to_float, _is_plain_numeric
from .messages import _PREVIEW_ITEMS, _duplicates, _fail, _preview, _quote, _short


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


def _ragged_problem(ragged: list[tuple[int, int]], n_names: int) -> str:
    """The message for records (line, number of fields) whose width is not the header's."""
    line, n_fields = ragged[0]
    problem = f"line {line} has {n_fields} fields but the header has {n_names}"
    if len(ragged) > 1:
        problem += f"; other such lines: {_preview([str(line) for line, _ in ragged[1:]])}"
    return problem


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
