"""Checks of the inputs that need no heavy import, and the wording every input check shares.

``inputs.py`` reads and checks whole tables (pandas, numpy). Before those are imported, a
single-TF command looks at the header line of each CSV input (``check_perturbed_tf``): a
perturbed TF that no column is named after is the commonest mistake, and it is reported at
once, in the words the full check uses (the functions below are that check's own). Anything
unusual about a header is left to the full check.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InputError

#: An interrupted run's record of its TF, seed, inputs and options (``<run>.partial/``).
MANIFEST = "run_manifest.json"

PREVIEW_ITEMS = 5
MAX_ITEM_CHARS = 40
# Enough of a file for any header line; a longer one is left to the full check.
_HEADER_BYTES = 1 << 20
PARQUET_SUFFIXES = (".parquet", ".pq")


def check_perturbed_tf(response_file: Path, predictors_file: Path, perturbed_tf: str) -> None:
    """Refuse a perturbed TF that the CSV headers show is not a column (as ``inputs`` would).

    The response needs a column named after the TF unless it has a single data column (the
    older two-column format); the predictors always do. A file that is Parquet, or whose
    header cannot be read plainly, is not judged here.

    Raises
    ------
    InputError
        The message ``inputs.prepare_modeling_data`` gives for the same file.
    """
    for path, role in ((response_file, "response"), (predictors_file, "predictors")):
        columns = _csv_columns(Path(path))
        if columns is None or perturbed_tf in columns:
            continue
        if role == "response" and len(columns) == 1:
            continue  # the older two-column response format: its one column is used
        raise fail(
            f"{role} file {path}", missing_column_problem(perturbed_tf, columns, "the perturbed TF")
        )


def read_manifest(partial_path: Path) -> dict[str, Any] | None:
    """The manifest of an interrupted run, or None when there is none (or it is unreadable)."""
    path = Path(partial_path) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "perturbed_tf" in manifest else None


def interrupted_tf(partial_dir: Path) -> str:
    """The perturbed TF of the interrupted run in ``partial_dir`` (``--resume``)."""
    manifest = read_manifest(Path(partial_dir))
    if manifest is None:
        raise InputError(
            f"--resume {partial_dir}: not the .partial directory of an interrupted run"
        )
    return str(manifest["perturbed_tf"])


def _csv_columns(path: Path) -> list[str] | None:
    """The data column names of a CSV table's header (after the id column), or None."""
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        return None
    try:
        with open(path, "rb") as stream:
            head = stream.read(_HEADER_BYTES)
        end = max(head.rfind(b"\n"), head.rfind(b"\r"))  # whole lines: no character cut
        text = head[: end + 1].decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    if end < 0:
        return None  # no complete line
    try:
        for row in csv.reader(io.StringIO(text, newline=""), strict=True):
            if any(cell.strip() for cell in row):
                names = [name.strip() for name in row]
                break
        else:
            return None
    except csv.Error:
        return None
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        return None  # the full check has its own words for these
    if any(_is_number(name) for name in names[1:]):
        return None  # perhaps no header line at all: the full check says so
    return names[1:]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def fail(label: str, problem: str) -> InputError:
    # One line whatever the offending values hold.
    return InputError(" ".join(f"{label}: {problem}".splitlines()))


def short(text: object) -> str:
    text = str(text)
    if not text.isprintable():
        text = repr(text)[1:-1]
    if len(text) > MAX_ITEM_CHARS:
        text = text[: MAX_ITEM_CHARS - 3] + "..."
    return text


def quote(text: object) -> str:
    return f"'{short(text)}'"


def preview(items: Sequence[str], total: int | None = None, *, shorten: bool = True) -> str:
    """The first few items, comma-separated, then "(N more)" if ``total`` exceeds them."""
    total = len(items) if total is None else total
    head = items[:PREVIEW_ITEMS]
    shown = ", ".join(short(item) for item in head) if shorten else ", ".join(head)
    hidden = total - min(len(items), PREVIEW_ITEMS)
    return f"{shown} ({hidden} more)" if hidden > 0 else shown


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def close_matches(name: str, candidates: Sequence[str]) -> list[str]:
    """Names that differ from ``name`` only in case, else the few most similar ones."""
    folded_name = name.casefold()
    same_but_case = [candidate for candidate in candidates if candidate.casefold() == folded_name]
    if same_but_case:
        return same_but_case
    by_folded: dict[str, list[str]] = {}
    for candidate in candidates:
        by_folded.setdefault(candidate.casefold(), []).append(candidate)
    folded_matches = difflib.get_close_matches(folded_name, list(by_folded), n=3, cutoff=0.6)
    return [candidate for key in folded_matches for candidate in by_folded[key]][:3]


def missing_column_problem(name: str, columns: Sequence[str], what: str) -> str:
    problem = f"no column named {quote(name)} ({what}; names are case-sensitive)"
    matches = close_matches(name, columns)
    if matches:
        return problem + f"; close matches: {', '.join(quote(match) for match in matches)}"
    return problem + f"; columns are: {preview([quote(column) for column in columns])}"
