"""The record reader: any CSV file read by the standard library's ``csv`` module (RFC 4180
quoting, strict), record by record, which names the file's first problem in the documented
order with the line it is on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection

import pandas as pd

from .cells import _looks_numeric, _parse_cells
from .checks import _check_column_names, _check_ids, _one_column_problem, _ragged_problem
from .files import _decode, _kept_positions
from .messages import _fail, _preview, _quote


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
