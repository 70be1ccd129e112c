"""The plain-file rules: a CSV file without quotes or NUL bytes, read by Arrow's CSV reader into
the frame the record reader makes of it (``_parse_plain_csv``), and the ragged records of such a
file found by counting commas (``_plain_shape_problem``).
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Collection
from typing import Any

import pandas as pd

from .cells import _NA_TOKENS, _looks_numeric, _parse_cells
from .checks import _ragged_problem
from .files import _kept_positions

# Columns with text that Arrow may hand back before the file is read record by record instead.
_MAX_TEXT_COLUMNS = 8


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
