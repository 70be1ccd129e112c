"""How each table and file of a run directory is encoded and written (SPEC §9).

Every table is CSV plus a typed Parquet twin made from one Arrow table; every file is
written to a temporary name beside its target and moved into place, so a reader never
sees half a file. The wide tables (bootstrap coefficients, draws, processed inputs)
travel to the worker that writes them as one array (``Matrix``, ``Draws``, ``Indexed``)
and become columns only there; a table a batch keeps once is hard-linked (``Linked``).
The run directory itself (its name, its ``.partial`` life, which files a stage has) is
``outputs.py``'s.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq


def write_table(
    frame: pd.DataFrame | dict[str, np.ndarray], path_without_suffix: Path, twin: bool = True
) -> None:
    """Write ``frame`` as ``.csv`` and (``twin``) ``.parquet`` (same columns, typed).

    ``frame`` may also be a dict of equal-length arrays (skips pandas for very
    wide tables such as ``bootstrap_indices``).

    Both come from one Arrow table; Arrow writes CSV numbers about eight times
    faster than pandas (it matters for the wide ``bootstrap_indices`` and the
    processed inputs, once per TF of a batch). Numbers are written in their
    shortest round-trip form, booleans as ``true``/``false``.
    """
    if isinstance(frame, dict):
        table = pa.table(frame)
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    csv_target = path_without_suffix.with_name(path_without_suffix.name + ".csv")
    parquet_target = path_without_suffix.with_name(path_without_suffix.name + ".parquet")
    with atomic(csv_target) as temporary:
        _write_csv(frame, table, temporary)
    if twin:
        with atomic(parquet_target) as temporary:
            _write_parquet(table, temporary)


def _write_parquet(table: pa.Table, path: Path) -> None:
    """Compact but lossless: zstd; integers delta-packed, floats byte-stream-split.

    Dictionaries only for text columns (numbers rarely repeat: a dictionary of
    random draws is larger than the draws). At 1000 bootstraps x 6000 rows the
    uint16 ``bootstrap_indices`` twin takes 12 MB this way, 31 MB with Arrow's
    defaults (int32, dictionaries, snappy).
    """
    encodings = {}
    for field in table.schema:
        if pa.types.is_integer(field.type):
            encodings[field.name] = "DELTA_BINARY_PACKED"
        elif pa.types.is_floating(field.type):
            encodings[field.name] = "BYTE_STREAM_SPLIT"
    dictionary = [name for name in table.column_names if name not in encodings]
    pq.write_table(
        table,
        path,
        compression="zstd",
        use_dictionary=dictionary,
        column_encoding=encodings or None,
    )


def _write_csv(frame: pd.DataFrame | dict[str, np.ndarray], table: pa.Table, path: Path) -> None:
    """Header by Python's csv module, body streamed to the file by Arrow."""
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([str(c) for c in table.column_names])
    try:
        with pa.OSFile(str(path), "wb") as handle:
            handle.write(header.getvalue().encode())
            pa_csv.write_csv(
                table,
                handle,
                write_options=pa_csv.WriteOptions(include_header=False, quoting_style="none"),
            )
    except pa.ArrowInvalid:  # a value needs quoting (a comma in an id): pandas quotes it
        pd.DataFrame(frame).to_csv(path, index=False, lineterminator="\n")


@contextmanager
def atomic(target: Path) -> Iterator[Path]:
    """A temporary path next to ``target``, moved onto it once written."""
    # A name of its own: two TFs of a batch may write the same shared file at once.
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` (e.g. a PNG) atomically."""
    with atomic(path) as temporary:
        temporary.write_bytes(data)


def write_json(value: Any, path: Path) -> None:
    """Write JSON atomically (indent 2, a trailing newline)."""
    with atomic(path) as temporary:
        temporary.write_text(json.dumps(value, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


Figure = tuple[Path, Callable[..., bytes], tuple]
"""``(path, plot, args)``: the PNG ``plot(*args)`` belongs at ``path``."""


def write_files(tables: list[tuple[Any, Path]], figures: list[Figure]) -> None:
    """Write the tables, then draw and write the figures (runs on a worker)."""
    write_tables(tables)
    for path, plot, args in figures:
        png = plot(*args)
        with atomic(path) as temporary:
            temporary.write_bytes(png)


def write_shared_rows(
    values: np.ndarray,
    keep: np.ndarray | None,
    index: pd.Index,
    columns: list[str],
    path: Path,
    tables: list[tuple[Any, Path]],
    twin: bool = True,
) -> None:
    """Write rows ``keep`` of a batch's predictor values as a TF's processed predictors,
    then ``tables`` (runs on a worker; ``Executor.shared`` holds ``values``)."""
    rows = values if keep is None else values[keep]
    frame = pd.DataFrame(rows, index=index, columns=pd.Index(columns))
    write_tables([(Indexed(frame, twin), path), *tables])


def write_tables(tables: list[tuple[Any, Path]]) -> None:
    """Write each ``(table, path without suffix)`` with ``write_table`` (runs on a worker).

    A table is a DataFrame, a dict of columns, or a ``Matrix``/``Indexed``/``Draws``
    that makes its columns here, where it is written (its ``write``): a wide table
    travels as one array, never as thousands of columns.
    """
    for table, path in tables:
        if isinstance(table, Matrix | Indexed | Draws | Linked):
            table.write(path)
        else:
            write_table(table, path)


@dataclass(frozen=True)
class Matrix:
    """``bootstrap`` then one column per column of ``values`` (``names``, or ``draw_{i}``)."""

    bootstrap: np.ndarray
    values: Any  # an array, or anything np.asarray makes one of (a stage's draws)
    names: list[str] | None

    def columns(self) -> dict[str, np.ndarray]:
        values = np.asarray(self.values)  # draws may come as their recipe (SeededDraws)
        names = self.names or [f"draw_{i}" for i in range(values.shape[1])]
        if "bootstrap" in names:
            raise ValueError("a column named 'bootstrap' would hide the bootstrap ids")
        columns = {"bootstrap": self.bootstrap}
        columns.update({name: values[:, j] for j, name in enumerate(names)})
        return columns

    def write(self, path_without_suffix: Path, twin: bool = True) -> None:
        write_table(self.columns(), path_without_suffix, twin=twin)


@dataclass(frozen=True)
class Draws:
    """A stage's draws: ``bootstrap_indices``.

    The CSV is the documented wide table (``bootstrap, draw_0 … draw_{n-1}``).
    Its Parquet twin holds the same numbers in the same order as two columns,
    ``bootstrap`` and ``draws`` (each bootstrap's row positions as one list of
    the smallest unsigned type), dictionary-encoded: the positions are then
    bit-packed at ceil(log2 n) bits, 9.8 MB at 1000 bootstraps x 6000 rows
    (their entropy is 9.4 MB) where 6000 columns took 12.4 MB.
    """

    bootstrap: np.ndarray
    values: Any  # the draws, or anything np.asarray makes them of (``SeededDraws``)
    twin: bool = True

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_bootstraps, n_rows)``, without making the draws."""
        return tuple(self.values.shape)

    def write(self, path_without_suffix: Path) -> None:
        draws = np.asarray(self.values)
        Matrix(self.bootstrap, draws, None).write(path_without_suffix, twin=False)
        if not self.twin:
            return
        n_bootstraps, n_draws = draws.shape
        offsets = np.arange(n_bootstraps + 1, dtype=np.int64) * n_draws
        lists = (pa.LargeListArray if draws.size >= 2**31 else pa.ListArray).from_arrays(
            offsets, pa.array(draws.reshape(-1))
        )
        table = pa.table({"bootstrap": pa.array(self.bootstrap), "draws": lists})
        target = path_without_suffix.with_name(path_without_suffix.name + ".parquet")
        with atomic(target) as temporary:
            pq.write_table(table, temporary, compression="zstd", use_dictionary=True)


@dataclass(frozen=True)
class Linked:
    """A table kept once in a ``BatchStore`` and hard-linked into a run directory.

    ``table`` (anything ``write_tables`` writes) is written to ``shared`` first when no
    earlier TF has written it there (None: the batch wrote it before its TFs started).
    """

    table: Any
    shared: Path  # without suffix
    twin: bool = True

    def write(self, path_without_suffix: Path) -> None:
        suffixes = (".csv", ".parquet") if self.twin else (".csv",)
        sources = [self.shared.with_name(self.shared.name + suffix) for suffix in suffixes]
        if self.table is not None and not all(source.exists() for source in sources):
            # Two TFs may both find it missing: each writes it atomically, the same bytes.
            write_tables([(self.table, self.shared)])
        for source, suffix in zip(sources, suffixes):
            link_or_copy(source, path_without_suffix.with_name(path_without_suffix.name + suffix))


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy where links cannot be made), atomically."""
    with atomic(target) as temporary:
        temporary.unlink(missing_ok=True)
        try:
            os.link(source, temporary)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(source, temporary)


@dataclass(frozen=True)
class Indexed:
    """A processed input frame: its feature ids become the first column, ``feature``."""

    frame: pd.DataFrame | pd.Series
    twin: bool = True  # also a Parquet twin

    def columns(self) -> pd.DataFrame:
        return self.frame.rename_axis("feature").reset_index()

    def write(self, path_without_suffix: Path) -> None:
        write_table(self.columns(), path_without_suffix, twin=self.twin)
