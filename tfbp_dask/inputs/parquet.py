"""Parquet tables: read by pyarrow, their ids taken from the first column or the pandas index,
then checked as a CSV file's are.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from tfbp_dask.errors import InputError

from .cells import _is_missing, _is_plain_numeric
from .checks import _check_column_names, _check_ids, _one_column_problem, _row_places
from .files import _kept_positions
from .messages import _duplicates, _fail, _first_line, _preview


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
