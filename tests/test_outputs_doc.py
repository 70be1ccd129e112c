"""docs/outputs.md describes every file, column and data_summary.json key that is written.

Small runs (the default, and one with ``--iterative_dropout --stage4_lasso`` and a
blacklist) and a small batch are made; every file they write must have a heading
in the doc, every CSV/Parquet column a row of that heading's table, and every
``data_summary.json`` key (top level and each nested one) a row of its table.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import dataset_config

from tfbp_dask import run, run_many

DOC = Path(__file__).resolve().parents[1] / "docs" / "outputs.md"
TABLE_SUFFIXES = (".csv", ".parquet")

# Placeholders of the doc's names; any other ``{name}`` stands for any text.
_PATH_PLACEHOLDERS = {
    "stage": "(?:all_data|topn)",
    "timestamp": r"\d{8}_\d{6}(?:_\d+)?",
    "c": r"\d+-\d+",
    "i": r"\d+",
    "n": r"\d+",
    "b": r"\d+",
    "s": r"\d+",
    "k": r"(?:_\d+)?",
}


def _pattern(name: str, other: str) -> re.Pattern:
    parts = re.split(r"(\{[^}]*\})", name)
    regex = "".join(
        _PATH_PLACEHOLDERS.get(part[1:-1], other)
        if part.startswith("{") and part.endswith("}")
        else re.escape(part)
        for part in parts
    )
    return re.compile(f"^{regex}$")


class Section:
    """One ``###`` heading of the doc: the file it names and the names of its table rows."""

    def __init__(self, heading: str) -> None:
        names = re.findall(r"`([^`]+)`", heading)
        assert names, f"a heading without a backticked file name: {heading!r}"
        self.name = names[0]
        self.path = _pattern(self.name, "[^/]+")
        self.rows: list[str] = []

    def names(self) -> list[re.Pattern]:
        return [_pattern(row, ".+") for row in self.rows]

    def describes(self, column: str) -> bool:
        return any(pattern.match(column) for pattern in self.names())


def parse_doc(text: str) -> dict[str, list[Section]]:
    """``{"run": sections, "batch": sections}`` from the ``##`` scopes of the doc."""
    scopes: dict[str, list[Section]] = {"run": [], "batch": []}
    scope = None
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            scope = (
                "run"
                if "(run directory)" in line
                else "batch"
                if "(batch output directory)" in line
                else None
            )
            section = None
        elif line.startswith("### ") and scope is not None:
            section = Section(line[4:])
            scopes[scope].append(section)
        elif line.startswith("|") and section is not None:
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if set(cells[0]) <= set("-: ") or cells[0] in ("column", "key"):
                continue  # the header and its rule
            names = re.findall(r"`([^`]+)`", cells[0])
            assert names, f"{section.name}: a row without a backticked name: {line!r}"
            assert len(cells) == 4 and all(cells), f"{section.name}: type, unit, meaning: {line!r}"
            section.rows += names
    return scopes


@pytest.fixture(scope="module")
def doc() -> dict[str, list[Section]]:
    return parse_doc(DOC.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def written(tiny_dataset, tmp_path_factory, client_two_workers):
    """Two run directories and a batch's output directory."""
    base = tmp_path_factory.mktemp("outputs_doc")
    blacklist = base / "blacklist.txt"
    blacklist.write_text("G0001\nG0002\n")
    config = dataset_config(tiny_dataset, base / "runs", n_bootstraps=16, random_state=3)
    plain = run(config, client=client_two_workers)
    other = run(
        replace(
            config,
            iterative_dropout=True,
            stage4_lasso=True,
            ptf_main_effect=True,
            squared_pTF=True,
            row_max=True,
            blacklist_file=blacklist,
        ),
        client=client_two_workers,
    )
    assert (other.run_dir / "all_data_results" / "iterative_dropout.csv").is_file()
    batch_dir = base / "batch"
    entries = run_many(
        [replace(config, perturbed_tf=tf, output_dir=batch_dir) for tf in ("TF01", "TF02")],
        client=client_two_workers,
    )
    return [plain.run_dir, other.run_dir], batch_dir, [e.run_dir for e in entries]


def _section(sections: list[Section], relative: str) -> Section:
    """The heading naming this file (with its suffix, or a table without one)."""
    stem = relative
    for suffix in TABLE_SUFFIXES:
        if relative.endswith(suffix):
            stem = relative[: -len(suffix)]
    matches = [s for s in sections if s.path.match(relative) or s.path.match(stem)]
    assert matches, f"docs/outputs.md has no heading for {relative}"
    assert len(matches) == 1, f"{relative}: more than one heading: {[s.name for s in matches]}"
    return matches[0]


def _columns(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        return list(pq.read_schema(path).names)
    return [str(c) for c in pd.read_csv(path, nrows=0).columns]


def _keys(value, prefix: str = "") -> list[str]:
    """Every key of a JSON object as a dotted path (``[]``: each element of a list of objects)."""
    keys = []
    for key, item in value.items():
        path = f"{prefix}{key}"
        keys.append(path)
        if isinstance(item, dict):
            keys += _keys(item, path + ".")
        elif isinstance(item, list) and item and isinstance(item[0], dict):
            for element in item:
                keys += _keys(element, path + "[].")
    return keys


def _check_files(directory: Path, sections: list[Section], skip=()) -> list[str]:
    """Check every file under ``directory`` (except the ``skip`` directories); their names."""
    checked = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if any(parent in skip for parent in path.parents):
            continue
        relative = path.relative_to(directory).as_posix()
        section = _section(sections, relative)
        if path.suffix in TABLE_SUFFIXES:
            missing = [c for c in _columns(path) if not section.describes(c)]
            assert not missing, f"{relative}: columns not in docs/outputs.md: {missing}"
        if path.name == "data_summary.json":
            keys = _keys(json.loads(path.read_text()))
            missing = [k for k in keys if not section.describes(k)]
            assert not missing, f"{relative}: keys not in docs/outputs.md: {missing}"
        checked.append(relative)
    return checked


def test_the_doc_parses_into_files_with_tables(doc):
    names = {section.name for section in doc["run"]}
    for expected in (
        "{stage}_results/bootstrap_coefficients",
        "input_data/data_summary.json",
        "input_data/bootstrap_indices",
    ):
        assert expected in names
    assert {s.name for s in doc["batch"]} >= {"batch_{timestamp}", "batch_{timestamp}_interactions"}
    summary = next(s for s in doc["run"] if s.name == "input_data/data_summary.json")
    assert summary.describes("reproducibility.machine.cpu_model")
    assert summary.describes("options.n_bootstraps")
    assert summary.describes("stages.topn.significant_terms")
    assert not summary.describes("stages.topn.nonsense")


def test_every_file_column_and_key_of_a_run_is_documented(doc, written):
    run_dirs, _, _ = written
    for run_dir in run_dirs:
        checked = _check_files(run_dir, doc["run"])
        assert "input_data/data_summary.json" in checked
        assert "topn_results/bootstrap_coefficients.parquet" in checked
    # The placeholder columns are what the doc says: the stage's terms, the draws.
    summary = json.loads((run_dirs[1] / "input_data" / "data_summary.json").read_text())
    for stage, directory in (("all_data", "all_data_results"), ("topn", "topn_results")):
        columns = _columns(run_dirs[1] / directory / "bootstrap_coefficients.csv")
        assert columns == ["bootstrap", *summary["stages"][stage]["terms"]]
    draws = _columns(run_dirs[1] / "input_data" / "bootstrap_indices.csv")
    assert draws[1:] == [f"draw_{i}" for i in range(summary["feature_counts"]["modeled"])]
    assert "options" in summary and "reproducibility" in summary


def test_every_file_and_column_of_a_batch_is_documented(doc, written):
    _, batch_dir, batch_runs = written
    checked = _check_files(batch_dir, doc["batch"], skip=set(batch_runs))
    assert any(name.endswith("_interactions.parquet") for name in checked)
    assert any("_input_data/bootstrap_indices_" in name for name in checked)
    for run_dir in batch_runs:
        _check_files(run_dir, doc["run"])


def test_a_column_missing_from_the_doc_fails_the_check(written):
    run_dirs, _, _ = written
    text = DOC.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| `cv_mse` |"))
    with pytest.raises(AssertionError, match="cv_mse"):
        _check_files(run_dirs[0], parse_doc(text.replace(row + "\n", ""))["run"])
    key = next(line for line in text.splitlines() if line.startswith("| `seed_source` |"))
    with pytest.raises(AssertionError, match="seed_source"):
        _check_files(run_dirs[0], parse_doc(text.replace(key + "\n", ""))["run"])
