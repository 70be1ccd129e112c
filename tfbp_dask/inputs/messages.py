"""The one-line messages of bad input: the label and problem joined (``_fail``), offending ids,
columns or lines shortened and previewed, close matches of a misspelt column name.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence

from tfbp_dask.errors import InputError

_PREVIEW_ITEMS = 5


_MAX_ITEM_CHARS = 40


def _fail(label: str, problem: str) -> InputError:
    # One line whatever the offending values hold.
    return InputError(" ".join(f"{label}: {problem}".splitlines()))


def _short(text: object) -> str:
    text = str(text)
    if not text.isprintable():
        text = repr(text)[1:-1]
    if len(text) > _MAX_ITEM_CHARS:
        text = text[: _MAX_ITEM_CHARS - 3] + "..."
    return text


def _quote(text: object) -> str:
    return f"'{_short(text)}'"


def _preview(items: Sequence[str], total: int | None = None, *, shorten: bool = True) -> str:
    """The first few items, comma-separated, then "(N more)" if ``total`` exceeds them."""
    total = len(items) if total is None else total
    head = items[:_PREVIEW_ITEMS]
    shown = ", ".join(_short(item) for item in head) if shorten else ", ".join(head)
    hidden = total - min(len(items), _PREVIEW_ITEMS)
    return f"{shown} ({hidden} more)" if hidden > 0 else shown


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _duplicates(names: Sequence[str]) -> list[str]:
    counts = Counter(names)
    return [name for name in counts if counts[name] > 1]


def _close_matches(name: str, candidates: Sequence[str]) -> list[str]:
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


def _missing_column_problem(name: str, columns: Sequence[str], what: str) -> str:
    problem = f"no column named {_quote(name)} ({what}; names are case-sensitive)"
    matches = _close_matches(name, columns)
    if matches:
        return problem + f"; close matches: {', '.join(_quote(match) for match in matches)}"
    return problem + f"; columns are: {_preview([_quote(column) for column in columns])}"


def _unknown_variables_problem(option: str, unknown: list[str], columns: Sequence[str]) -> str:
    problem = f"{option} {_not_columns(unknown)}"
    matches = _close_matches(unknown[0], columns)
    if matches:
        return problem + (
            f"; close matches for {_quote(unknown[0])}: "
            f"{', '.join(_quote(match) for match in matches)}"
        )
    return problem + f"; predictor columns are: {_preview([_quote(c) for c in columns])}"


def _not_columns(names: Sequence[str]) -> str:
    quoted = _preview([_quote(name) for name in names])
    if len(names) == 1:
        return f"names a variable that is not a predictor column: {quoted}"
    return f"names {len(names)} variables that are not predictor columns: {quoted}"
