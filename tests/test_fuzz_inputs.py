"""Property-based tests: mangled input files and option values end cleanly.

Every case either loads, and then the modeled rows keep the promises of ``ModelingData``, or
fails with ``InputError``: one line that starts with the file's role and path. Any other
exception is a failure. Where the outcome can be predicted it is checked too: a file changed
in harmless ways (quoting, BOM, line endings, padding, number spelling, junk in rows that are
not modeled) reads exactly as the clean file; a file whose structure is broken fails; values
that load are the numbers their cells spell.

Through the command line a bad case exits with status 2, exactly one line on stderr and no
output directory. The cluster is never started: ``tfbp_dask.api._connect`` is replaced by a
stub that stops a valid run where it would first use the cluster, so valid option values can
be fuzzed too.

The number of cases tried is counted per test, must reach what its settings ask for, and is
printed in the terminal summary.
"""

from __future__ import annotations

import decimal
import logging
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import FUZZ_SETTINGS, ClusterStub, fuzz_examples
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from tfbp_dask import api
from tfbp_dask.cli import main
from tfbp_dask.errors import InputError
from tfbp_dask.inputs import (
    ModelingData,
    load_inputs,
    plain_csv,
    read_blacklist,
    read_table,
    records,
)

PTF = "TF03"
TFS = ("TF01", "TF02", "TF03", "TF04")
COMMAND = "linear_perturbation_binding_modeling"
ROLES = ("response", "predictors", "blacklist")

# The cells that read as missing values (see tfbp_dask.inputs).
NA_SPELLINGS = (
    "", "NaN", "nan", "NA", "null", "NULL", "N/A", "n/a", "<NA>", "None", "-nan", "#N/A",
    "1.#QNAN",
)  # fmt: skip
NA_TOKENS = frozenset({*NA_SPELLINGS, "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "1.#IND"})
# Cells that are not numbers (or not finite ones), each a trap for some parser.
JUNK = (
    "abc", "1,5", '"quoted"', "1.2.3", "--1", "True", "false", "0x1A", "1e", "1.5e", "e5", "1e+",
    "+-1", "1 2", "∞", "inf", "-Infinity", "1e400", "-1e400", "n.d.", "\t", "   ", "a\nb", "é",
    "\x00", "1\x00",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Counting the cases tried

CASES_TRIED: Counter[str] = Counter()


class _CaseCountReport:
    """Prints the number of fuzzed cases at the end of the session, whatever the capture mode."""

    def pytest_terminal_summary(self, terminalreporter) -> None:
        total = sum(CASES_TRIED.values())
        if not total:
            return
        terminalreporter.write_sep("-", f"fuzzed input cases tried: {total}")
        for name, count in sorted(CASES_TRIED.items()):
            terminalreporter.write_line(f"{name}: {count}")


@pytest.fixture(scope="module", autouse=True)
def _count_report(pytestconfig):
    name = "tfbp-dask-fuzz-case-count"
    if not pytestconfig.pluginmanager.has_plugin(name):
        pytestconfig.pluginmanager.register(_CaseCountReport(), name)
    yield


def _tried(name: str) -> None:
    CASES_TRIED[name] += 1


# Cases each property test asks for (its max_examples), by test function name.
CASES_WANTED: dict[str, int] = {}


def fuzzed(count: int):
    """Settings for a property test of ``count`` cases (scaled by TFBP_FUZZ_SCALE)."""
    examples = fuzz_examples(count)

    def decorate(test):
        CASES_WANTED[test.__name__] = examples
        return settings(max_examples=examples, **FUZZ_SETTINGS)(test)

    return decorate


@pytest.fixture(autouse=True)
def _every_case_is_tried(request):
    """A property test that tried fewer cases than it asks for tested less than it claims."""
    before = sum(CASES_TRIED.values())
    yield
    wanted = CASES_WANTED.get(request.function.__name__)
    if wanted is not None:
        tried = sum(CASES_TRIED.values()) - before
        assert tried >= wanted, f"{request.function.__name__}: {tried} of {wanted} cases tried"


# ---------------------------------------------------------------------------------------------
# Tables as cells, and writing them


@dataclass
class Table:
    """A CSV table as cell texts (unquoted); rows may be ragged once mangled."""

    header: list[str]
    rows: list[list[str]]

    def copy(self) -> Table:
        return Table(list(self.header), [list(row) for row in self.rows])


@dataclass(frozen=True)
class Style:
    """How a table is written: none of these may change what it means."""

    quoting: str = "minimal"  # "minimal", "all" or "some"
    line_end: str = "\n"
    bom: bool = False
    pad: bool = False  # whitespace around unquoted cells
    blank_lines: bool = False  # blank / comma-only / whitespace-only lines between rows
    trailing: str = "\n"  # after the last row
    seed: int = 0


def _needs_quotes(cell: str) -> bool:
    return any(char in cell for char in ',"\r\n')


def render(table: Table, style: Style) -> bytes:
    rnd = random.Random(style.seed)
    lines = []
    blanks = ("", "   ", ",,", " , ,\t", ",")
    for row in [table.header, *table.rows]:
        cells = []
        for cell in row:
            quote = (
                _needs_quotes(cell)
                or style.quoting == "all"
                or (style.quoting == "some" and rnd.random() < 0.5)
            )
            if quote:
                cells.append('"' + cell.replace('"', '""') + '"')
            elif style.pad:
                cells.append(rnd.choice(("", " ", "  ", "\t")) + cell + rnd.choice(("", " ", "\t")))
            else:
                cells.append(cell)
        lines.append(",".join(cells))
        if style.blank_lines and rnd.random() < 0.3:
            lines.append(rnd.choice(blanks))
    text = style.line_end.join(lines) + style.trailing.replace("\n", style.line_end)
    return (b"\xef\xbb\xbf" if style.bom else b"") + text.encode("utf-8")


styles = st.builds(
    Style,
    quoting=st.sampled_from(("minimal", "all", "some")),
    line_end=st.sampled_from(("\n", "\r\n", "\r")),
    bom=st.booleans(),
    pad=st.booleans(),
    blank_lines=st.booleans(),
    trailing=st.sampled_from(("\n", "", "\n\n", "\n\n\n", "\n   \n", "\n,,,\n")),
    seed=st.integers(0, 2**16),
)

# ---------------------------------------------------------------------------------------------
# Values and their spellings

# Seeded generators for the many small choices (which row, which cell): uniform, and cheaper
# to draw than one hypothesis draw per choice.
rngs = st.integers(0, 2**32 - 1).map(random.Random)

interesting_floats = st.sampled_from(
    (
        0.0, -0.0, 1.0, -3.0, 0.1, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-310, 1e308,
        -1e308, 1.7976931348623157e308, 123456789012345678.0, 9007199254740993.0,
    )
)  # fmt: skip
finite_floats = st.one_of(
    interesting_floats,
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(10**6), 10**6).map(float),
)


def spell(value: float, how: int) -> str:
    """A text that reads exactly as ``value``; ``how`` picks the spelling."""
    spellings = [repr(value), f"{value:.17g}", f"{value:.17e}", f"{value:.17E}"]
    if value.is_integer():
        spellings.append(str(int(value)))
    text = repr(value)
    if not text.startswith("-"):
        spellings.append("+" + text)
    if text.startswith(("0.", "-0.")) and "e" not in text:
        spellings.append(text.replace("0.", ".", 1))
    if text.endswith(".0"):
        spellings.append(text[:-1])  # "3."
    return spellings[how % len(spellings)]


def ref_float(cell: str) -> float | None:
    """What a cell means: a number, NaN for a missing value, None if it is not a number."""
    text = cell.strip()
    if text in NA_TOKENS:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


ODD_IDS = (
    "YAL001C, tRNA", '"quoted"', "a,b,c", " padded ", "NA", "nan", "1e5", "inf", "TF03_like",
    "Gène", "\ufeffBOM", "x\ty", "0", "-1",
)  # fmt: skip
id_texts = st.one_of(
    st.from_regex(r"\A[A-Z]{1,3}[0-9]{1,5}[A-Z]?\Z"),
    st.sampled_from(ODD_IDS),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8),
).filter(lambda text: text.strip() != "" and text.strip() not in TFS)


def junk_cell(rnd: random.Random, draw) -> str:
    """Mostly a known troublemaker, sometimes any short text."""
    if rnd.random() < 0.8:
        return rnd.choice(NA_SPELLINGS + JUNK)
    return draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=6))


junk_cells = st.one_of(
    st.sampled_from(NA_SPELLINGS + JUNK),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
)

# ---------------------------------------------------------------------------------------------
# A valid pair of tables, with the result they must give


@dataclass
class Dataset:
    response: Table
    predictors: Table
    blacklist: list[str]
    expected_ids: list[str]  # modeled ids, sorted
    response_values: dict[str, float]  # by feature id
    predictor_values: dict[str, list[float]]  # by feature id, in predictor column order
    predictor_columns: list[str]
    index_name: str
    legacy: bool  # a two-column response file whose column is not named after the pTF
    counts: dict[str, int] = field(default_factory=dict)


def _blacklist_breaks(feature: str) -> bool:
    return "\r" in feature or "\n" in feature or feature.startswith("\ufeff")


@st.composite
def datasets(draw) -> Dataset:
    """Valid response and predictors tables; junk only where it is never read as a value."""
    rnd = draw(rngs)
    ids = draw(st.lists(id_texts, min_size=6, max_size=10, unique_by=str.strip))
    if draw(st.booleans()):
        ids.append(rnd.choice((PTF, f" {PTF} ")))  # the pTF's own row: never modeled
    only_response = draw(st.lists(id_texts, max_size=2, unique_by=str.strip))
    only_predictors = draw(st.lists(id_texts, max_size=2, unique_by=str.strip))
    seen = {i.strip() for i in ids}
    only_response = [i for i in only_response if i.strip() not in seen]
    seen |= {i.strip() for i in only_response}
    only_predictors = [i for i in only_predictors if i.strip() not in seen]
    # One id per line: an id holding a line break (legal in a quoted CSV cell) cannot be listed,
    # nor can one starting with a byte order mark be the first.
    listable = [i.strip() for i in ids if not _blacklist_breaks(i.strip())]
    blacklist = [i for i in listable if rnd.random() < 0.15]
    blacklist += draw(st.lists(st.sampled_from(("NOT_A_GENE", "zzz", "TF99")), max_size=2))
    common = {i.strip() for i in ids}
    expected = sorted(common - set(blacklist) - {PTF})
    assume(len(expected) >= 4)
    modeled = set(expected)

    def cell(value: float, used: bool) -> str:
        if not used and rnd.random() < 0.5:
            return junk_cell(rnd, draw)
        return spell(value, rnd.randrange(8))

    def unread_cell() -> str:  # the response file's other columns are never read as values
        if rnd.random() < 0.5:
            return junk_cell(rnd, draw)
        return spell(draw(finite_floats), rnd.randrange(8))

    legacy = rnd.random() < 0.1
    if legacy:
        response_columns = [rnd.choice(("log2fc", "TF3", "response"))]
    else:
        extra = rnd.sample(("note", "TF05", "log2fc", "TF03_x"), rnd.randrange(3))
        response_columns = rnd.sample([*TFS, *extra], len(TFS) + len(extra))
    predictor_columns = rnd.sample(TFS, len(TFS))
    id_header = rnd.choice(("gene_id", "", "locus", "  id  ", "TF", "Gene ID", "TF03 id"))
    response = Table([id_header, *response_columns], [])
    predictors = Table([id_header, *predictor_columns], [])
    response_values: dict[str, float] = {}
    predictor_values: dict[str, list[float]] = {}
    for feature in ids:
        key = feature.strip()
        used = key in modeled
        response_values[key] = draw(finite_floats)
        predictor_values[key] = [draw(finite_floats) for _ in predictor_columns]
        response_cells = [
            cell(response_values[key], used) if legacy or name == PTF else unread_cell()
            for name in response_columns
        ]
        response.rows.append([feature, *response_cells])
        predictors.rows.append([feature, *(cell(v, used) for v in predictor_values[key])])
    for feature in only_response:
        response.rows.append([feature, *(cell(0.0, False) for _ in response_columns)])
    for feature in only_predictors:
        predictors.rows.append([feature, *(cell(0.0, False) for _ in predictor_columns)])
    rnd.shuffle(response.rows)
    rnd.shuffle(predictors.rows)
    counts = {
        "response_rows": len(response.rows),
        "predictor_rows": len(predictors.rows),
        "common": len(common),
        "blacklisted_removed": len(common & (set(blacklist) | {PTF})),
        "modeled": len(expected),
    }
    return Dataset(
        response,
        predictors,
        blacklist,
        expected,
        response_values,
        predictor_values,
        predictor_columns,
        id_header.strip(),
        legacy,
        counts,
    )


# ---------------------------------------------------------------------------------------------
# Checking outcomes


def check_modeling_data(data: ModelingData) -> None:
    """The promises of ModelingData, for any input that loads."""
    assert isinstance(data, ModelingData)
    assert data.perturbed_tf == PTF
    response, predictors = data.response, data.predictors
    assert response.dtype == np.float64 and response.name == PTF
    assert all(dtype == np.float64 for dtype in predictors.dtypes)
    assert np.isfinite(response.to_numpy()).all()
    assert np.isfinite(predictors.to_numpy()).all()
    ids = list(response.index)
    assert all(isinstance(feature, str) and feature == feature.strip() for feature in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert PTF not in ids
    assert len(ids) >= 4
    assert predictors.index.equals(response.index)
    assert PTF in predictors.columns and predictors.columns.is_unique
    assert data.feature_counts["modeled"] == len(ids)
    for warning in data.warnings:
        assert _one_line(warning)


def _one_line(text: str) -> bool:
    return len(text.splitlines()) == 1 and "\n" not in text and "\r" not in text


def check_input_error(error: InputError, files: dict[str, Path]) -> str:
    """A one-line message starting with the role and path of one of the files."""
    message = str(error)
    assert _one_line(message), repr(message)
    labels = [f"{role} file {path}: " for role, path in files.items()]
    assert message.startswith(tuple(labels)), message
    return message


def _outcome(result: ModelingData | InputError) -> str:
    """A short label of an outcome, for hypothesis' statistics."""
    if isinstance(result, ModelingData):
        return "loaded"
    problem = str(result).split(": ", 1)[1]
    return "InputError: " + re.sub(r"['(].*", "", problem)[:40]


def load(files: dict[str, Path], **options) -> ModelingData | InputError:
    """``load_inputs`` on the files: its result or its InputError; anything else propagates."""
    try:
        return load_inputs(
            files["response"],
            files["predictors"],
            PTF,
            blacklist_file=files.get("blacklist"),
            **options,
        )
    except InputError as error:
        check_input_error(error, files)
        return error


def write_files(directory: Path, response: bytes, predictors: bytes, blacklist: list[str] | None):
    directory.mkdir(parents=True, exist_ok=True)
    files = {"response": directory / "response.csv", "predictors": directory / "predictors.csv"}
    files["response"].write_bytes(response)
    files["predictors"].write_bytes(predictors)
    if blacklist is not None:
        files["blacklist"] = directory / "blacklist.txt"
        lines = "".join(f"{feature}\n" for feature in blacklist)
        files["blacklist"].write_text(lines, encoding="utf-8")
    return files


def assert_expected(data: ModelingData | InputError, dataset: Dataset) -> None:
    if isinstance(data, InputError):
        pytest.fail(f"a valid file was rejected: {data}")
    check_modeling_data(data)
    assert list(data.response.index) == dataset.expected_ids
    assert data.response.index.name == dataset.index_name
    assert list(data.predictors.columns) == dataset.predictor_columns
    expected_response = [dataset.response_values[i] for i in dataset.expected_ids]
    expected_predictors = [dataset.predictor_values[i] for i in dataset.expected_ids]
    np.testing.assert_array_equal(data.response.to_numpy(), expected_response)
    np.testing.assert_array_equal(data.predictors.to_numpy(), expected_predictors)
    assert data.feature_counts == dataset.counts
    assert len(data.warnings) == dataset.legacy


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def valid_dataset() -> Dataset:
    ids = [f"Y{k:05d}W" for k in range(12)] + [PTF, "TF01"]
    rng = np.random.default_rng(5)
    values = rng.normal(size=(len(ids), 2 * len(TFS))).round(6)
    response = Table(["gene_id", *TFS], [])
    predictors = Table(["gene_id", *TFS], [])
    for feature, row in zip(ids, values):
        response.rows.append([feature, *(repr(float(v)) for v in row[: len(TFS)])])
        predictors.rows.append([feature, *(repr(float(v)) for v in row[len(TFS) :])])
    expected = sorted(set(ids) - {PTF})
    return Dataset(
        response,
        predictors,
        [],
        expected,
        {f: float(row[TFS.index(PTF)]) for f, row in zip(ids, values)},
        {f: [float(v) for v in row[len(TFS) :]] for f, row in zip(ids, values)},
        list(TFS),
        "gene_id",
        False,
        {
            "response_rows": len(ids),
            "predictor_rows": len(ids),
            "common": len(ids),
            "blacklisted_removed": 1,
            "modeled": len(expected),
        },
    )


@pytest.fixture(scope="module")
def valid_files(workdir: Path, valid_dataset: Dataset) -> dict[str, Path]:
    files = write_files(
        workdir / "valid",
        render(valid_dataset.response, Style()),
        render(valid_dataset.predictors, Style()),
        None,
    )
    assert_expected(load(files), valid_dataset)
    return files


# ---------------------------------------------------------------------------------------------
# 1. Harmless changes read exactly as the clean file


@fuzzed(150)
@given(dataset=datasets(), response_style=styles, predictors_style=styles)
def test_harmless_variants_read_exactly(dataset, response_style, predictors_style, workdir):
    _tried("harmless CSV variants")
    files = write_files(
        workdir / "harmless",
        render(dataset.response, response_style),
        render(dataset.predictors, predictors_style),
        dataset.blacklist,
    )
    assert_expected(load(files), dataset)


# ---------------------------------------------------------------------------------------------
# 2. Mangled tables: clean failure, or values that are what the cells spell


def _pick_row(table: Table, rnd: random.Random) -> list[str] | None:
    return rnd.choice(table.rows) if table.rows else None


def _data_column(table: Table, rnd: random.Random) -> int | None:
    return rnd.randrange(1, len(table.header)) if len(table.header) > 1 else None


def m_ragged_extra(table, rnd, draw):
    row = _pick_row(table, rnd)
    if row is not None:
        row.append(draw(st.sampled_from(("", "1.5", "x", " "))))
    return row is not None


def m_ragged_missing(table, rnd, draw):
    row = _pick_row(table, rnd)
    if row is not None and len(row) > 1:
        row.pop(rnd.randrange(1, len(row)))
        return True
    return False


def m_duplicate_header(table, rnd, draw):
    if len(table.header) < 3:
        return False
    first, second = rnd.sample(range(1, len(table.header)), 2)
    table.header[second] = rnd.choice(("", " ", "\t")) + table.header[first].strip() + " "
    return True


def m_empty_header(table, rnd, draw):
    column = _data_column(table, rnd)
    if column is not None:
        table.header[column] = rnd.choice(("", "  ", "\t"))
    return column is not None


def m_duplicate_id(table, rnd, draw):
    if len(table.rows) < 2:
        return False
    source, target = rnd.sample(table.rows, 2)
    target[0] = rnd.choice(("", " ")) + source[0].strip() + rnd.choice(("", "  "))
    return True


def m_empty_id(table, rnd, draw):
    rows = [row for row in table.rows if any(cell.strip() for cell in row[1:])]
    if rows:
        rnd.choice(rows)[0] = rnd.choice(("", " ", "\t "))
    return bool(rows)


def m_cell(values):
    def mangle(table, rnd, draw):
        row = _pick_row(table, rnd)
        if row is None or len(row) < 2:
            return False
        row[rnd.randrange(1, len(row))] = draw(values)
        return True

    return mangle


def m_column(values):
    def mangle(table, rnd, draw):
        column = _data_column(table, rnd)
        if column is None:
            return False
        for row in table.rows:
            if column < len(row):
                row[column] = draw(values)
        return True

    return mangle


def m_rename_ptf(table, rnd, draw):
    if PTF not in table.header:
        return False
    new = draw(st.sampled_from(("tf03", "Tf03", "TF3", "TF03_x", "", f" {PTF}\t", "TF 03")))
    table.header[table.header.index(PTF)] = new
    return True


def m_drop_column(table, rnd, draw):
    column = _data_column(table, rnd)
    if column is None:
        return False
    if rnd.random() < 0.5 and PTF in table.header:
        column = table.header.index(PTF)
    del table.header[column]
    for row in table.rows:
        if column < len(row):
            del row[column]
    return True


def m_blank_row(table, rnd, draw):
    row = _pick_row(table, rnd)
    if row is not None:
        row[:] = [rnd.choice(("", " ", "\t")) for _ in row]
    return row is not None


def m_drop_rows(table, rnd, draw):
    keep = rnd.randrange(0, 5)
    del table.rows[keep:]
    return True


def m_drop_header(table, rnd, draw):
    if not table.rows:
        return False
    table.header = table.rows.pop(0)
    return True


def m_shuffle_columns(table, rnd, draw):
    order = [0, *rnd.sample(range(1, len(table.header)), len(table.header) - 1)]
    table.header = [table.header[i] for i in order]
    table.rows = [[row[i] for i in order if i < len(row)] for row in table.rows]
    return all(len(row) == len(table.header) for row in table.rows)


number_cells = st.one_of(
    st.sampled_from(("1e400", "-1e400", "1e308", "-1e308", "5e-324", "1e-400", "-0", "1E5")),
    st.sampled_from(("99999999999999999999", "18446744073709551616", "-9223372036854775809")),
    finite_floats.map(lambda value: f"{value:.3e}"),
)
STRUCTURE_MANGLES = {
    # name: (mangle, breaks the file whatever else holds)
    "ragged_extra": (m_ragged_extra, True),
    "ragged_missing": (m_ragged_missing, True),
    "duplicate_header": (m_duplicate_header, True),
    "empty_header": (m_empty_header, True),
    "duplicate_id": (m_duplicate_id, True),
    "empty_id": (m_empty_id, True),
    "na_cell": (m_cell(st.sampled_from(NA_SPELLINGS)), False),
    "junk_cell": (m_cell(junk_cells), False),
    "number_cell": (m_cell(number_cells), False),
    "whitespace_cell": (m_cell(st.sampled_from((" ", "\t", "  \t "))), False),
    "na_column": (m_column(st.sampled_from(NA_SPELLINGS)), False),
    "junk_column": (m_column(junk_cells), False),
    "bool_column": (m_column(st.sampled_from(("True", "False", "true", "FALSE"))), False),
    "rename_ptf": (m_rename_ptf, False),
    "drop_column": (m_drop_column, False),
    "blank_row": (m_blank_row, False),
    "drop_rows": (m_drop_rows, False),
    "drop_header": (m_drop_header, False),
    "shuffle_columns": (m_shuffle_columns, False),
}


def r_insert(data: bytes):
    def mangle(raw: bytes, rnd: random.Random) -> bytes:
        position = rnd.randrange(len(raw) + 1)
        return raw[:position] + data + raw[position:]

    return mangle


def r_truncate(raw: bytes, rnd: random.Random) -> bytes:
    return raw[: rnd.randrange(len(raw) + 1)]


def r_utf16(raw: bytes, rnd: random.Random) -> bytes:
    return raw.decode("utf-8").encode(rnd.choice(("utf-16", "utf-16-le", "utf-32")))


def r_mixed_newlines(raw: bytes, rnd: random.Random) -> bytes:
    first, *rest = raw.split(b"\n")
    return first + b"".join(rnd.choice((b"\n", b"\r\n", b"\r")) + piece for piece in rest)


def r_latin1(raw: bytes, rnd: random.Random) -> bytes:
    return raw.decode("utf-8").encode("latin-1", errors="replace")


RAW_MANGLES = {
    "latin1_e": r_insert(b"\xe9"),
    "lone_ff": r_insert(b"\xff"),
    "nul": r_insert(b"\x00"),
    "bom_inside": r_insert(b"\xef\xbb\xbf"),
    "quote": r_insert(b'"'),
    "random_bytes": None,  # filled in by the strategy
    "truncate": r_truncate,
    "utf16": r_utf16,
    "latin1_file": r_latin1,
    "mixed_newlines": r_mixed_newlines,
}


@dataclass
class MangledCase:
    dataset: Dataset
    tables: dict[str, Table]
    raw: dict[str, bytes]
    structure: list[tuple[str, str]]  # (role, mangle)
    raw_mangles: list[tuple[str, str]]
    must_fail: bool


@st.composite
def mangled_cases(draw) -> MangledCase:
    dataset = draw(datasets())
    rnd = draw(rngs)
    tables = {"response": dataset.response.copy(), "predictors": dataset.predictors.copy()}
    structure = []
    for _ in range(draw(st.integers(0, 3))):
        role = draw(st.sampled_from(("response", "predictors")))
        name = draw(st.sampled_from(sorted(STRUCTURE_MANGLES)))
        mangle, _ = STRUCTURE_MANGLES[name]
        if mangle(tables[role], rnd, draw):
            structure.append((role, name))
    # With several changes a later one may repair an earlier one (a blanked row, …).
    must_fail = len(structure) == 1 and STRUCTURE_MANGLES[structure[0][1]][1]
    raw = {role: render(table, draw(styles)) for role, table in tables.items()}
    raw_mangles = []
    for _ in range(draw(st.integers(0, 1) if structure else st.just(1))):
        role = draw(st.sampled_from(("response", "predictors")))
        name = draw(st.sampled_from(sorted(RAW_MANGLES)))
        if name == "random_bytes":
            raw[role] = r_insert(draw(st.binary(min_size=1, max_size=8)))(raw[role], rnd)
        else:
            raw[role] = RAW_MANGLES[name](raw[role], rnd)
        raw_mangles.append((role, name))
    return MangledCase(dataset, tables, raw, structure, raw_mangles, must_fail)


def _rows_by_id(table: Table) -> tuple[dict[str, list[str]], list[str]]:
    """The data rows by id, and the column names: blank lines are skipped, the header too."""
    header, *rows = [row for row in [table.header, *table.rows] if any(c.strip() for c in row)]
    return {row[0].strip(): row for row in rows}, [name.strip() for name in header]


def check_values_match_cells(data: ModelingData, case: MangledCase) -> None:
    """Every loaded value is the number its cell spells; the rows are the expected ones."""
    response_rows, response_names = _rows_by_id(case.tables["response"])
    predictor_rows, predictor_names = _rows_by_id(case.tables["predictors"])
    common = set(response_rows) & set(predictor_rows)
    expected_ids = sorted(common - set(case.dataset.blacklist) - {PTF})
    assert list(data.response.index) == expected_ids
    if PTF in response_names[1:]:
        response_position = response_names.index(PTF)
    else:
        assert len(response_names) == 2 and len(data.warnings) == 1
        response_position = 1
    assert list(data.predictors.columns) == predictor_names[1:]
    for feature in expected_ids:
        cell = response_rows[feature][response_position]
        assert ref_float(cell) == data.response[feature], (feature, cell)
        for position, name in enumerate(predictor_names[1:], start=1):
            cell = predictor_rows[feature][position]
            assert ref_float(cell) == data.predictors.at[feature, name], (feature, name, cell)


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@fuzzed(250)
@given(case=mangled_cases())
def test_mangled_tables_load_or_fail_cleanly(case, workdir):
    _tried("mangled CSV tables")
    files = write_files(
        workdir / "mangled", case.raw["response"], case.raw["predictors"], case.dataset.blacklist
    )
    result = load(files)
    event(_outcome(result))
    undecodable = [role for role in ("response", "predictors") if not _decodes(case.raw[role])]
    if undecodable:
        # The response file is read first; its own problem may come before the predictors'.
        assert isinstance(result, InputError)
        if undecodable[0] == "response" or str(result).startswith("predictors file"):
            assert "not valid UTF-8" in str(result)
        return
    if case.must_fail and not case.raw_mangles:
        assert isinstance(result, InputError), case.structure
    if isinstance(result, ModelingData):
        check_modeling_data(result)
        if not case.raw_mangles:
            check_values_match_cells(result, case)


# ---------------------------------------------------------------------------------------------
# 3. Random bytes and random CSV-like text


csv_alphabet = st.sampled_from(
    list(",,,,\n\n\r \"'0123456789.eE-+naNIfTxy\t;\ufeff\x00é") + ["TF03", "gene", "inf", "NA"]
)


@fuzzed(120)
@given(
    role=st.sampled_from(("response", "predictors")),
    prefix=st.sampled_from((b"", b"gene_id,TF01,TF03\n", b'"gene_id","TF03"\r\n', b"\xef\xbb\xbf")),
    content=st.one_of(
        st.binary(max_size=300),
        st.lists(csv_alphabet, max_size=120).map(lambda parts: "".join(parts).encode()),
    ),
    suffix=st.sampled_from((".csv", ".parquet", ".pq", ".txt", ".CSV", ".PARQUET")),
)
def test_random_bytes_fail_cleanly(role, prefix, content, suffix, workdir, valid_files):
    _tried("random bytes")
    files = dict(valid_files)
    files[role] = workdir / f"random_{role}{suffix}"
    files[role].write_bytes(prefix + content)
    result = load(files)
    event(_outcome(result))
    if isinstance(result, ModelingData):
        check_modeling_data(result)
    else:
        message = str(result)
        if not (prefix + content).strip():
            assert message.endswith("is empty"), message


# ---------------------------------------------------------------------------------------------
# 4. Blacklist files with random content


# ---------------------------------------------------------------------------------------------
# 3b. Plain files are read by Arrow: the same frame, bit for bit, or left to the csv reader


def assert_same_frame(fast: pd.DataFrame, slow: pd.DataFrame) -> None:
    assert list(fast.columns) == list(slow.columns)
    assert fast.index.name == slow.index.name
    assert fast.index.tolist() == slow.index.tolist()
    assert fast.dtypes.tolist() == slow.dtypes.tolist()
    for column in slow.columns:
        expected, got = slow[column].to_numpy(), fast[column].to_numpy()
        if expected.dtype != np.float64:  # a column with text
            assert got.tolist() == expected.tolist(), column
            continue
        same_bits = got.view(np.int64) == expected.view(np.int64)
        assert np.all(same_bits | (np.isnan(got) & np.isnan(expected))), column


plain_cells = st.one_of(
    st.builds(spell, finite_floats, st.integers(0, 10)),
    st.sampled_from(sorted(NA_TOKENS)),
    # more digits than a double holds: correct rounding decides the last bit
    st.builds(
        lambda sign, digits, exponent: f"{sign}0.{digits}e{exponent}",
        st.sampled_from(("", "-", "+")),
        st.from_regex(r"\A[0-9]{17,30}\Z"),
        st.integers(-330, 310),
    ),
    st.sampled_from(("inf", "-Infinity", "1e400", "4.9e-324", "2.4703282292062328e-324")),
)


@st.composite
def plain_tables(draw) -> bytes:
    """Tables Arrow may read (numbers and missing-value tokens), sometimes a little broken."""
    cells = draw(st.lists(st.lists(plain_cells, min_size=3, max_size=3), min_size=1, max_size=20))
    table = Table(
        ["gene_id", "TF01", "TF02", "TF03"], [[f"g{r}", *row] for r, row in enumerate(cells)]
    )
    rnd = draw(rngs)
    for _ in range(draw(st.integers(0, 2))):
        mangle, _ = STRUCTURE_MANGLES[draw(st.sampled_from(sorted(STRUCTURE_MANGLES)))]
        mangle(table, rnd, draw)
    raw = render(table, draw(styles.map(lambda style: replace(style, quoting="minimal"))))
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(set(RAW_MANGLES) - {"random_bytes"})))
        raw = RAW_MANGLES[name](raw, rnd)
    return raw


csv_tables = st.one_of(
    st.builds(lambda data, style: render(data.predictors, style), datasets(), styles),
    mangled_cases().map(lambda case: case.raw["predictors"]),
    plain_tables(),
    plain_tables(),
    st.lists(csv_alphabet, max_size=120)
    .map(lambda parts: "".join(parts).encode())
    .map(lambda content: b"gene_id,TF01,TF03\n" + content),
)


@fuzzed(250)
@given(raw=csv_tables)
def test_arrow_reader_reads_what_the_csv_reader_reads(raw):
    """Whatever the bytes: Arrow declines, or its frame is the csv reader's, bit for bit."""
    _tried("Arrow reader next to the csv reader")
    fast = plain_csv._parse_plain_csv(raw)
    shape = plain_csv._plain_shape_problem(raw)
    try:
        slow = records._parse_any_csv(raw, "predictors file x.csv")
    except InputError as error:
        slow, refused = None, str(error)
    if shape is not None:
        event("ragged plain file: counted")
        assert fast is None and slow is None
        assert refused == f"predictors file x.csv: {shape}"
    if fast is None:
        event("left to the csv reader")
    else:
        text = sum(dtype != np.float64 for dtype in fast.dtypes)
        event("read by Arrow, a column with text" if text else "read by Arrow, numbers only")
    if fast is not None:
        assert slow is not None, "Arrow read a file the csv reader refuses"
        assert_same_frame(fast, slow)


@fuzzed(200)
@given(
    raw=csv_tables,
    wanted=st.lists(st.sampled_from((*TFS, "gene_id", "TF05")), max_size=3, unique=True),
)
def test_reading_some_columns_is_selecting_them(raw, wanted, workdir):
    """``read_table(..., columns)`` is the whole table's selection, or the same refusal.

    The wanted columns only when the file has each of them, else every column; a file is
    checked whole either way (a ragged record, a bad id or name in any column is refused).
    """
    _tried("some columns read")
    path = workdir / "some_columns.csv"
    path.write_bytes(raw)
    try:
        whole = read_table(path, "response")
    except InputError as error:
        event("refused, whole or in part")
        with pytest.raises(InputError) as refused:
            read_table(path, "response", wanted)
        assert str(refused.value) == str(error)
        return
    some = read_table(path, "response", wanted)
    names = [str(name) for name in whole.columns]
    if set(wanted) <= set(names):
        event("the wanted columns")
        assert_same_frame(some, whole[[name for name in names if name in wanted]])
    else:
        event("a wanted column is missing: every column")
        assert_same_frame(some, whole)


@fuzzed(100)
@given(
    cells=st.lists(st.lists(plain_cells, min_size=3, max_size=3), min_size=1, max_size=30),
    line_end=st.sampled_from(("\n", "\r\n", "\r")),
    bom=st.booleans(),
    trailing=st.booleans(),
)
def test_plain_numeric_files_are_read_by_arrow_as_float_reads_them(cells, line_end, bom, trailing):
    _tried("plain files read by Arrow")
    lines = ["gene_id,TF01,TF02,TF03", *(f"g{row},{','.join(r)}" for row, r in enumerate(cells))]
    text = line_end.join(lines) + (line_end if trailing else "")
    raw = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    frame = plain_csv._parse_plain_csv(raw)
    assert frame is not None
    assert frame.index.tolist() == [f"g{row}" for row in range(len(cells))]
    for position, column in enumerate(("TF01", "TF02", "TF03")):
        for row, cell in enumerate(cells):
            got, expected = frame[column].iloc[row], ref_float(cell[position])
            if math.isnan(expected):
                assert math.isnan(got), cell[position]
            else:
                assert np.float64(got).tobytes() == np.float64(expected).tobytes(), cell[position]


@fuzzed(150)
@given(
    widths=st.lists(st.sampled_from((4, 4, 4, 3, 5, 1)), min_size=1, max_size=25),
    blanks=st.lists(st.sampled_from(("", " ", ",,,", " , ,\t", "\u00a0,")), max_size=4),
    line_ends=st.lists(st.sampled_from(("\n", "\r\n", "\r")), min_size=1, max_size=3),
    bom=st.booleans(),
    trailing=st.booleans(),
    rnd=rngs,
)
def test_ragged_plain_files_are_refused_as_the_csv_reader_refuses_them(
    widths, blanks, line_ends, bom, trailing, rnd
):
    """Counting commas names the same ragged lines, in the same words, as reading records."""
    _tried("ragged plain files counted")
    lines = ["gene_id,TF01,TF02,TF03"]
    lines += [",".join([f"g{row}", *["0.5"] * (width - 1)]) for row, width in enumerate(widths)]
    for blank in blanks:  # blank records anywhere after the header
        lines.insert(rnd.randint(1, len(lines)), blank)
    text = "".join(line + rnd.choice(line_ends) for line in lines[:-1]) + lines[-1]
    raw = (b"\xef\xbb\xbf" if bom else b"") + (text + ("\n" if trailing else "")).encode()
    shape = plain_csv._plain_shape_problem(raw)
    try:
        records._parse_any_csv(raw, "response file r.csv")
    except InputError as error:
        refused = str(error)
    else:
        refused = None
    if shape is None:
        assert refused is None or "fields but the header has" not in refused
    else:
        assert refused == f"response file r.csv: {shape}"
    assert (shape is None) == all(width == 4 for width in widths)


def _blacklist_ids(raw: bytes) -> set[str] | None:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    return {line.strip() for line in _lines(text)} - {""}


def _lines(text: str) -> list[str]:
    """Lines as the tables have them: ended by \\n, \\r\\n or \\r only."""
    return re.split(r"\r\n|\r|\n", text)


@fuzzed(80)
@given(
    content=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=100).map(lambda text: text.encode("utf-8", errors="surrogatepass")),
        st.lists(
            st.tuples(
                st.sampled_from(("Y00001W", "Y00002W", "TF01", PTF, "nope", "y00003w", "")),
                st.sampled_from(("", " ", "\t")),
                st.sampled_from(("\n", "\r\n", "\r", "\n\n")),
            ),
            max_size=20,
        ).map(lambda items: "".join(f"{s}{i}{s}{e}" for i, s, e in items).encode()),
        st.sampled_from(
            (b"\xef\xbb\xbfY00004W\n", b"Y00005\xe9W\n", b"\xff", b"", b"\n\n  \n", b"\x00")
        ),
    )
)
def test_blacklist_with_random_content(content, workdir, valid_files, valid_dataset):
    _tried("blacklist files")
    files = dict(valid_files)
    files["blacklist"] = workdir / "random_blacklist.txt"
    files["blacklist"].write_bytes(content)
    result = load(files)
    blacklisted = _blacklist_ids(content)
    if blacklisted is None:
        assert isinstance(result, InputError)
        assert str(result).startswith(f"blacklist file {files['blacklist']}: ")
        assert "not valid UTF-8" in str(result)
        return
    lines = [line.strip() for line in _lines(content.decode("utf-8-sig"))]
    assert read_blacklist(files["blacklist"]) == list(dict.fromkeys(line for line in lines if line))
    expected = sorted(set(valid_dataset.expected_ids) - blacklisted)
    if len(expected) < 4:
        assert isinstance(result, InputError) and "at least 4" in str(result)
        return
    assert isinstance(result, ModelingData), result
    check_modeling_data(result)
    assert list(result.response.index) == expected


# ---------------------------------------------------------------------------------------------
# 5. --add_model_variables / --exclude_interactor_variables names, straight to load_inputs


variable_names = st.one_of(
    st.sampled_from((*TFS, "tf01", "TF05", "exclude_all", "", " TF02", "TF01,TF02", "row_max")),
    st.text(max_size=6),
)


@fuzzed(60)
@given(
    add=st.lists(variable_names, max_size=3),
    exclude=st.lists(variable_names, max_size=3),
)
def test_variable_names(add, exclude, valid_files):
    _tried("variable names")
    result = load(valid_files, add_model_variables=add, exclude_interactor_variables=exclude)
    unknown_add = [name for name in add if name not in TFS]
    unknown_exclude = [name for name in exclude if name not in TFS and name != "exclude_all"]
    if unknown_add:
        assert isinstance(result, InputError)
        assert str(result).startswith(f"predictors file {valid_files['predictors']}: ")
        assert "--add_model_variables" in str(result)
        return
    assert isinstance(result, ModelingData), result
    check_modeling_data(result)
    assert len(result.warnings) == (1 if unknown_exclude else 0)
    if unknown_exclude:
        assert "--exclude_interactor_variables" in result.warnings[0]


# ---------------------------------------------------------------------------------------------
# 6. Parquet files written from mangled frames


COLUMN_KINDS = (
    "float", "int", "float32", "uint8", "nullable_int", "number_strings", "category", "decimal",
    "bool", "nullable_bool", "text", "mixed", "all_null", "nan_somewhere", "inf_somewhere",
    "list", "date",
)  # fmt: skip
# Kinds whose every cell is a finite number.
CLEAN_KINDS = set(COLUMN_KINDS[:8])


def _parquet_column(kind: str, values: list[float], rnd: random.Random) -> tuple[object, list]:
    """A column of the given kind and the float64 value each of its cells must read as."""
    n = len(values)
    small = [float(round(v)) % 200 for v in values]
    if kind == "float":
        return np.array(values), values
    if kind == "int":
        ints = [int(v) for v in small]
        return np.array(ints, dtype=np.int64), [float(i) for i in ints]
    if kind == "float32":
        column = np.array(values, dtype=np.float64).clip(-1e30, 1e30).astype(np.float32)
        return column, [float(v) for v in column]
    if kind == "uint8":
        column = np.array(small, dtype=np.uint8)
        return column, [float(v) for v in column]
    if kind == "nullable_int":
        return pd.array([int(v) for v in small], dtype="Int64"), small
    if kind == "number_strings":
        return [repr(v) for v in values], values
    if kind == "category":
        return pd.Categorical(small), small
    if kind == "decimal":
        return [decimal.Decimal(repr(v)) for v in small], small
    if kind == "bool":
        return np.array([rnd.random() < 0.5 for _ in range(n)]), []
    if kind == "nullable_bool":
        return pd.array([True, None, *([False] * (n - 2))], dtype="boolean"), []
    if kind == "text":
        return [rnd.choice(("a", "b", "1.5x", "")) for _ in range(n)], []
    if kind == "mixed":
        return [rnd.choice(("1.5", None, "2.5", "x", "nan", "")) for _ in range(n)], []
    if kind == "all_null":
        return [None] * n, []
    if kind == "nan_somewhere":
        column = np.array(values)
        column[rnd.randrange(n)] = np.nan
        return column, []
    if kind == "inf_somewhere":
        column = np.array(values)
        column[rnd.randrange(n)] = rnd.choice((np.inf, -np.inf))
        return column, []
    if kind == "list":
        return [[v] for v in values], []
    if kind == "date":
        return pd.date_range("2020-01-01", periods=n), []
    raise AssertionError(kind)


@dataclass
class ParquetCase:
    frame: pd.DataFrame
    ids: list[str]  # in file order (before any shuffling)
    expected: dict[str, list[float]]  # per TF column, the value each row must read as
    layout: str
    clean: bool  # must load, with exactly these values
    duplicate_columns: bool


@st.composite
def parquet_frames(draw) -> ParquetCase:
    rnd = draw(rngs)
    n = draw(st.integers(6, 9))
    ids = [f"G{k:02d}" for k in range(n)] + ([PTF] if draw(st.booleans()) else [])
    values = draw(
        st.lists(
            st.lists(finite_floats, min_size=len(TFS), max_size=len(TFS)),
            min_size=len(ids),
            max_size=len(ids),
        )
    )
    kinds = [draw(st.sampled_from(COLUMN_KINDS)) for _ in TFS]
    if draw(st.booleans()):
        kinds = [draw(st.sampled_from(sorted(CLEAN_KINDS))) for _ in TFS]
    id_kind = draw(st.sampled_from(("str", "str", "int", "with_none", "duplicated", "category")))
    layout = draw(st.sampled_from(PARQUET_LAYOUTS))
    duplicate_columns = draw(st.integers(0, 9)) == 0
    frame = pd.DataFrame({"gene_id": ids})
    expected: dict[str, list[float]] = {}
    for tf, kind, column in zip(TFS, kinds, zip(*values)):
        frame[tf], expected[tf] = _parquet_column(kind, list(column), rnd)
    clean = (
        set(kinds) <= CLEAN_KINDS
        and id_kind in ("str", "category")
        and layout in CLEAN_LAYOUTS
        and not duplicate_columns
    )
    if id_kind == "int":
        frame["gene_id"] = range(100, 100 + len(ids))
    elif id_kind == "with_none":
        frame.loc[rnd.randrange(len(ids)), "gene_id"] = None
    elif id_kind == "duplicated":
        frame.loc[0, "gene_id"] = frame.loc[1, "gene_id"]
    elif id_kind == "category":
        frame["gene_id"] = frame["gene_id"].astype("category")
    if layout == "index_named":
        frame = frame.set_index("gene_id")
    elif layout == "shuffled":
        frame = frame.sample(frac=1.0, random_state=rnd.randrange(1000))
    elif layout == "index_unnamed":
        frame = frame.set_index("gene_id").rename_axis(None)
    elif layout == "padded_names":
        frame.columns = [f" {name}\t" for name in frame.columns]
    elif layout == "no_rows":
        frame = frame.iloc[:0]
    elif layout == "ids_only":
        frame = frame[["gene_id"]]
    elif layout == "multiindex":
        frame = frame.assign(batch=1).set_index(["gene_id", "batch"])
    return ParquetCase(frame, ids, expected, layout, clean, duplicate_columns)


PARQUET_LAYOUTS = (
    "column",  # a RangeIndex, not stored
    "index_named",  # ids in the index (frame.set_index("gene_id"))
    "shuffled",  # leftover row numbers in the index
    "index_unnamed",  # ids in an unnamed index
    "no_pandas_metadata",  # as written by other tools than pandas
    "padded_names",
    "no_rows",
    "ids_only",
    "multiindex",
)
CLEAN_LAYOUTS = set(PARQUET_LAYOUTS[:6])


@fuzzed(80)
@given(
    case=parquet_frames(),
    role=st.sampled_from(("response", "predictors")),
    suffix=st.sampled_from((".parquet", ".pq", ".Parquet")),
)
def test_parquet_from_mangled_frames(case, role, suffix, workdir, valid_files):
    _tried("Parquet frames")
    ids, expected = case.ids, case.expected
    path = workdir / f"mangled_{role}{suffix}"
    table = pa.Table.from_pandas(case.frame)
    if case.layout == "no_pandas_metadata":
        table = table.replace_schema_metadata(None)
    duplicate_columns = case.duplicate_columns and table.num_columns > 2
    if duplicate_columns:
        names = list(table.column_names)
        names[2] = names[1]
        table = table.rename_columns(names)
    pq.write_table(table, path)
    files = dict(valid_files)
    files[role] = path
    other = "predictors" if role == "response" else "response"
    # The other file holds the same ids, with clean values.
    other_frame = pd.DataFrame({"gene_id": ids, **{tf: np.arange(len(ids)) % 7 for tf in TFS}})
    files[other] = workdir / f"clean_{other}.csv"
    other_frame.to_csv(files[other], index=False)
    result = load(files)
    event(_outcome(result))
    if duplicate_columns:
        assert isinstance(result, InputError) and "duplicate column names" in str(result)
        return
    if not case.clean:
        if isinstance(result, ModelingData):
            check_modeling_data(result)
        return
    if isinstance(result, InputError):
        pytest.fail(f"a valid Parquet file was rejected: {result}")
    check_modeling_data(result)
    modeled = sorted(set(ids) - {PTF})
    assert list(result.response.index) == modeled
    rows = [ids.index(feature) for feature in modeled]
    if role == "response":
        np.testing.assert_array_equal(result.response.to_numpy(), [expected[PTF][r] for r in rows])
    else:
        for tf in TFS:
            np.testing.assert_array_equal(
                result.predictors[tf].to_numpy(), [expected[tf][r] for r in rows]
            )


# ---------------------------------------------------------------------------------------------
# 7. The command line: option values and files, exit 2 and one line, or the cluster stub


class _ClusterWouldStart(BaseException):
    """Raised by the stub where a valid run would connect to a cluster (not an Exception, so
    that the command line does not turn it into exit status 1)."""


def _cluster_would_start():
    raise _ClusterWouldStart


def _refuse_cluster(*args, **kwargs):
    return ClusterStub(_cluster_would_start)


@dataclass(frozen=True)
class CliOutcome:
    status: int | None  # None: the run got as far as starting the cluster
    stderr: str


def run_cli(argv: list[str], capsys, output_dir: Path) -> CliOutcome:
    loggers = [logging.getLogger(name) for name in ("tfbp_dask", "distributed", "tornado", "bokeh")]
    saved = [(logger, list(logger.handlers), logger.level) for logger in loggers]
    capsys.readouterr()
    try:
        with mock.patch.object(api, "_connect", _refuse_cluster):
            main([COMMAND, *argv, f"--output_dir={output_dir}"])
    except _ClusterWouldStart:
        status = None
    except SystemExit as stop:
        status = stop.code
    else:
        pytest.fail("main() returned without starting the cluster")
    finally:
        for logger, handlers, level in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
    assert not output_dir.exists(), "an output directory was left behind"
    return CliOutcome(status, capsys.readouterr().err)


def assert_exit_2_one_line(outcome: CliOutcome) -> str:
    assert outcome.status == 2, outcome
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1, outcome.stderr
    assert outcome.stderr.endswith("\n")
    assert lines[0].startswith("tfbp-dask: error: ")
    assert "Traceback" not in outcome.stderr
    return lines[0]


INF_WORDS = ("np.inf", "inf", "Inf", "numpy.inf")


def _int_ok(text: str, low: int, high: float = math.inf) -> bool:
    try:
        value = int(text)
    except ValueError:
        return False
    return low <= value < high


def _level_ok(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return 0.0 < value < 100.0


def _positive_float_ok(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def _bins_ok(text: str) -> bool:
    edges = []
    for item in text.split(","):
        item = item.strip()
        try:
            edges.append(math.inf if item in INF_WORDS else float(item))
        except ValueError:
            return False
    return (
        len(edges) >= 2
        and edges[0] == 0
        and edges[-1] == math.inf
        and all(not math.isnan(edge) for edge in edges)
        and all(a < b for a, b in zip(edges, edges[1:]))
    )


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _level_name_ok(text: str) -> bool:
    return isinstance(logging.getLevelName(text.upper()), int)


# Which values each option accepts (the reference the command line is checked against).
OPTION_OK = {
    # The upper limits keep a typo from asking for a run of days or an int32 overflow.
    "--n_bootstraps": lambda text: _int_ok(text, 1, 10**6 + 1),
    "--top_n": lambda text: _int_ok(text, 1, 10**9 + 1),
    "--max_iter": lambda text: _int_ok(text, 1, 2**31),
    "--random_state": lambda text: _int_ok(text, 0, 2**32 - 10),
    "--bins": _bins_ok,
    "--all_data_ci_level": _level_ok,
    "--topn_ci_level": _level_ok,
    "--stabilization_ci_start": _level_ok,
    "--stabilization_ci_step": _positive_float_ok,
    "--engine": lambda text: text in ("sklearn", "gram"),
    "--add_model_variables": lambda text: all(name in TFS for name in _names(text)),
    "--exclude_interactor_variables": lambda text: True,
    "--log-level": _level_name_ok,
    "--perturbed_tf": lambda text: _names(text) == [PTF],
}

argv_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8
)
int_texts = st.one_of(
    st.sampled_from(("0", "-1", "x", "", " ", "1.5", "1e3", "-0", "nan", "+0", "0x10", "1_0")),
    st.integers(-(10**30), 0).map(str),
    st.integers(1, 10**30).map(str),
    argv_text,
)
level_texts = st.one_of(
    st.sampled_from(("-1", "0", "100", "150", "nan", "NaN", "inf", "-inf", "x", "", "1e400")),
    st.sampled_from(("1e-400", "-0", "99.9999", "100.0000001", "5e1", "1_0")),
    st.floats(allow_nan=False).map(repr),
    argv_text,
)
BINS_SAMPLES = (
    "", "0", "0,8,12", "1,8,np.inf", "0,12,8,np.inf", "0,0,np.inf", "np.inf", "0,-np.inf",
    "0,inf,inf", "0,8,12,np.inf,", ",0,np.inf", "0;8;np.inf", "0,1e400", "-0,np.inf", "0,8,-inf",
    "0 ,  numpy.inf", "0,8,12,NP.INF", "0,nan,np.inf", "nan,np.inf", "0,8,nan",
)  # fmt: skip
bins_texts = st.one_of(
    st.sampled_from(BINS_SAMPLES),
    st.lists(st.sampled_from([*"0123456789.,-+e ", "inf", "np.inf", "Inf"]), max_size=10).map(
        "".join
    ),
)
OPTION_VALUES = {
    "--n_bootstraps": int_texts,
    "--top_n": int_texts,
    "--max_iter": int_texts,
    "--random_state": st.one_of(
        int_texts,
        st.sampled_from((str(2**32 - 11), str(2**32 - 10), str(2**32), str(2**64))),
    ),
    "--bins": bins_texts,
    "--all_data_ci_level": level_texts,
    "--topn_ci_level": level_texts,
    "--stabilization_ci_start": level_texts,
    "--stabilization_ci_step": st.sampled_from(
        ("0", "-1", "x", "", "-inf", "-0.5", "1e-400", "nan", "NaN", "inf", "2.5")
    ),
    "--engine": st.one_of(st.sampled_from(("turbo", "Gram", "sklearn ", "", "lars")), argv_text),
    "--add_model_variables": st.lists(variable_names, max_size=3).map(",".join),
    "--exclude_interactor_variables": st.lists(variable_names, max_size=3).map(",".join),
    "--log-level": st.one_of(st.sampled_from(("LOUD", "", "verbose", "5", "Level 5")), argv_text),
    "--perturbed_tf": st.one_of(
        st.sampled_from(("tf03", "TF3", "TF99", "", " ", "gene_id", "TF03 ", "ALL", "All")),
        # No commas and no "all": a batch records a TF's bad input and goes on.
        argv_text.filter(lambda text: "," not in text and text.strip() != "all"),
    ),
}


@fuzzed(40)
@given(
    options=st.dictionaries(
        st.sampled_from(sorted(OPTION_VALUES)), st.none(), min_size=1, max_size=3
    ).flatmap(lambda chosen: st.fixed_dictionaries({name: OPTION_VALUES[name] for name in chosen})),
)
def test_cli_option_values(options, valid_files, workdir, capsys):
    _tried("command-line option values")
    argv = [
        f"--response_file={valid_files['response']}",
        f"--predictors_file={valid_files['predictors']}",
    ]
    if "--perturbed_tf" not in options:
        argv.append(f"--perturbed_tf={PTF}")
    argv += [f"{name}={value}" for name, value in options.items()]
    outcome = run_cli(argv, capsys, workdir / "cli_out")
    invalid = [name for name, value in options.items() if not OPTION_OK[name](value)]
    if not invalid:
        assert outcome.status is None, outcome
        return
    line = assert_exit_2_one_line(outcome)
    mentions = list(invalid)
    if "--perturbed_tf" in invalid:
        mentions += ["response file", "predictors file"]
    if "--add_model_variables" in invalid:
        mentions += ["predictors file"]
    assert any(name in line for name in mentions), (line, invalid)


@fuzzed(40)
@given(case=mangled_cases())
def test_cli_mangled_files(case, workdir, capsys):
    _tried("command line with mangled files")
    files = write_files(
        workdir / "cli_mangled",
        case.raw["response"],
        case.raw["predictors"],
        case.dataset.blacklist,
    )
    expected = load(files)
    argv = [f"--{role}_file={path}" for role, path in files.items()]
    argv += [f"--perturbed_tf={PTF}", "--n_bootstraps=3", "--random_state=1"]
    outcome = run_cli(argv, capsys, workdir / "cli_out")
    if isinstance(expected, ModelingData):
        assert outcome.status is None, outcome
        return
    line = assert_exit_2_one_line(outcome)
    assert line == f"tfbp-dask: error: {expected}"


# ---------------------------------------------------------------------------------------------
# Regressions (bugs the fuzzing found in tfbp_dask.inputs)


@pytest.mark.parametrize("role", ROLES)
def test_path_too_long_is_an_input_error(role, valid_files, tmp_path, capsys):
    files = dict(valid_files)
    files[role] = tmp_path / ("x" * 300 + ".csv")  # longer than a file name may be
    with pytest.raises(InputError, match=rf"^{role} file .*: cannot be read \(File name too long"):
        load_inputs(
            files["response"], files["predictors"], PTF, blacklist_file=files.get("blacklist")
        )
    argv = [f"--{name}_file={path}" for name, path in files.items()]
    outcome = run_cli([*argv, f"--perturbed_tf={PTF}"], capsys, tmp_path / "out")
    assert f"{role} file" in assert_exit_2_one_line(outcome)


def test_long_csv_with_a_late_text_value_reads_without_warning(tmp_path):
    # pandas parses long files in chunks by default, and a column that turns to text in a later
    # chunk gave a DtypeWarning (an error under this test suite's warning filter).
    n = 270_000
    path = tmp_path / "long.csv"
    lines = [f"Y{k:07d}W,{k},{k % 3}" for k in range(n)]
    lines[-1] = f"Y{n - 1:07d}W,n.d.,1"
    path.write_text("gene_id,TF01,TF03\n" + "\n".join(lines) + "\n")
    table = read_table(path, "response")
    assert len(table) == n
    assert table["TF03"].dtype == np.float64
    assert table["TF01"].iloc[-1] == "n.d." and float(table["TF01"].iloc[0]) == 0.0


def test_parquet_of_a_shuffled_frame_keeps_its_id_column(tmp_path, valid_files):
    # A frame sorted, sampled or filtered in pandas keeps its row numbers as an index, and
    # to_parquet() stores them; they used to be taken for the feature ids.
    frame = pd.read_csv(valid_files["predictors"])
    path = tmp_path / "predictors.parquet"
    frame.sample(frac=1.0, random_state=3).to_parquet(path)
    assert not isinstance(pd.read_parquet(path).index, pd.RangeIndex)
    from_csv = load_inputs(valid_files["response"], valid_files["predictors"], PTF)
    from_parquet = load_inputs(valid_files["response"], path, PTF)
    pd.testing.assert_frame_equal(from_parquet.predictors, from_csv.predictors, check_exact=True)
    # A named index, or an unnamed one next to numeric columns only, still holds the ids.
    frame.set_index("gene_id").sample(frac=1.0, random_state=4).to_parquet(path)
    pd.testing.assert_frame_equal(
        load_inputs(valid_files["response"], path, PTF).predictors, from_csv.predictors
    )
    frame.set_index("gene_id").rename_axis(None).to_parquet(path)
    data = load_inputs(valid_files["response"], path, PTF)
    np.testing.assert_array_equal(data.predictors.to_numpy(), from_csv.predictors.to_numpy())


def test_signed_numbers_next_to_whitespace_read_exactly(tmp_path):
    # pandas' parser read " +0.19512517313618982" one unit in the last place off.
    values = [0.19512517313618982, 2.688643717546608e-118, 6.7885267826334e-87, 1.5]
    path = tmp_path / "response.csv"
    cells = [" +0.19512517313618982", "+2.688643717546608e-118 ", "\t+6.7885267826334e-87", "1.5"]
    path.write_text("gene_id,TF03\n" + "".join(f"G{k}, {c}\n" for k, c in enumerate(cells)))
    table = read_table(path, "response")
    assert table["TF03"].tolist() == values
    assert list(table.index) == ["G0", "G1", "G2", "G3"]


def test_first_data_line_may_start_with_a_byte_order_mark(tmp_path):
    # pandas drops U+FEFF at the start of what it parses; only the file's own BOM is not data.
    path = tmp_path / "response.csv"
    path.write_text("\ufeffgene_id,TF03\n\ufeffG0,1\nG1,2\n", encoding="utf-8")
    assert list(read_table(path, "response").index) == ["\ufeffG0", "G1"]


def test_blacklist_lines_end_only_at_line_breaks(tmp_path):
    # str.splitlines() also splits at \x1c-\x1e, \x85, \u2028, ..., which a CSV id may hold.
    path = tmp_path / "blacklist.txt"
    path.write_text("A\x1eB\r\nC\x85D\rE\u2028F\n  G \n\n", encoding="utf-8")
    assert read_blacklist(path) == ["A\x1eB", "C\x85D", "E\u2028F", "G"]


def test_parquet_duplicate_column_names_are_named(tmp_path, valid_files):
    # pq.read_table() failed on them first, with a message that did not say so.
    path = tmp_path / "predictors.parquet"
    table = pa.table({"gene_id": ["a", "b"], "TF01": [1.0, 2.0], "TF03": [3.0, 4.0]})
    pq.write_table(table.rename_columns(["gene_id", "TF01", "TF01"]), path)
    with pytest.raises(InputError, match=r"predictors file .*: duplicate column names: TF01$"):
        load_inputs(valid_files["response"], path, PTF)


# ---------------------------------------------------------------------------------------------
# NaN option values once passed the range checks of config.py (comparisons with NaN are false)


@pytest.mark.parametrize(
    "option, value",
    [("--bins", "0,nan,np.inf"), ("--stabilization_ci_step", "nan")],
)
def test_nan_option_values_are_rejected(option, value, valid_files, tmp_path, capsys):
    argv = [f"--{name}_file={path}" for name, path in valid_files.items()]
    outcome = run_cli([*argv, f"--perturbed_tf={PTF}", f"{option}={value}"], capsys, tmp_path / "o")
    assert option in assert_exit_2_one_line(outcome)
