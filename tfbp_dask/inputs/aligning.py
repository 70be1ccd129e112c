"""Preparing one perturbed TF's modeled rows from tables already read: the response column,
the alignment of the two tables on their common feature ids less the blacklist (and the TF's
own id), the row order, and the values checked on those rows (``prepare_modeling_data``); a
batch's predictor rows, checked once for every TF (``check_predictor_rows``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tfbp_dask.errors import InputError

from .checks import _check_ids, _checked_column, _checked_predictors, _row_places
from .messages import (
    _fail,
    _missing_column_problem,
    _not_columns,
    _plural,
    _quote,
    _short,
    _unknown_variables_problem,
)

# The package's name, as the run log names this logger.
logger = logging.getLogger("tfbp_dask.inputs")


@dataclass(frozen=True, eq=False)
class ModelingData:
    """The aligned, validated rows of one perturbed TF, ready for the design matrix.

    Attributes
    ----------
    perturbed_tf : str
        The perturbed TF (pTF).
    response : Series of shape (n_features,)
        float64 response values; index = modeled feature ids, ascending; name = the pTF.
    predictors : DataFrame of shape (n_features, n_predictors)
        float64 binding values; same index as ``response``; columns = every predictor column in
        file order, the pTF's included.
    feature_counts : dict of str to int
        ``response_rows``, ``predictor_rows``, ``common`` (ids in both files),
        ``blacklisted_removed`` (common ids removed by the blacklist, the pTF's own id included)
        and ``modeled``.
    warnings : tuple of str
        One-line warnings raised while preparing (also logged at WARNING).
    """

    perturbed_tf: str
    response: pd.Series
    predictors: pd.DataFrame
    feature_counts: dict[str, int]
    warnings: tuple[str, ...] = ()
    rows: CheckedRows | None = None  # where ``predictors`` came from, in a batch


@dataclass(frozen=True, eq=False)
class CheckedRows:
    """A TF's predictor values as rows of a batch's checked predictors.

    The cluster already holds those (``Executor.shared``): a worker makes the
    TF's design matrix and processed predictors table from them and ``keep``,
    so the client sends neither.
    """

    checked: CheckedPredictors
    keep: np.ndarray | None  # boolean mask over ``checked.ids``; None: every row


@dataclass(frozen=True, eq=False)
class CheckedPredictors:
    """A predictors table's values on a set of rows, every column converted and checked clean.

    A batch makes it once (:func:`check_predictor_rows`) for the rows every TF may model (the
    ids both tables share, less the blacklist); each TF then takes its rows from it instead of
    converting and checking all columns again (``prepare_modeling_data(checked=…)``).
    """

    ids: pd.Index
    columns: tuple[str, ...]
    values: np.ndarray  # float64, (len(ids), len(columns))
    # How the rows were found, so that a TF of the same tables takes its rows without
    # matching thousands of ids again (``_rows_from_checked``).
    tables: tuple[pd.DataFrame, pd.DataFrame]  # (response, predictors)
    blacklist: frozenset[str]
    response_rows: np.ndarray  # each id's row in the response table
    counts: tuple[int, int, int, int]  # response, predictor, common, blacklisted


def response_column(
    response_table: pd.DataFrame, perturbed_tf: str, response_path: Path | str
) -> tuple[int, str | None]:
    """Position of the pTF's column in the response table, and a warning if it is a guess.

    The column named after the pTF; else, in the older two-column format (one data column),
    that column, with a warning saying so.

    Raises
    ------
    InputError
        No column is named after the pTF and there are several (close matches are listed).
    """
    label = f"response file {response_path}"
    columns = [str(column) for column in response_table.columns]
    if perturbed_tf in columns:
        return columns.index(perturbed_tf), None
    if len(columns) == 1:
        return 0, (
            f"{label}: its only data column, {_quote(columns[0])}, is not named after the "
            f"perturbed TF {_quote(perturbed_tf)}; using it as the response (older two-column "
            "response format)"
        )
    raise _fail(label, _missing_column_problem(perturbed_tf, columns, "the perturbed TF"))


def prepare_modeling_data(
    response_table: pd.DataFrame,
    predictors_table: pd.DataFrame,
    perturbed_tf: str,
    *,
    response_path: Path | str,
    predictors_path: Path | str,
    blacklist: Iterable[str] = (),
    add_model_variables: Sequence[str] = (),
    exclude_interactor_variables: Sequence[str] = (),
    min_rows: int = 4,
    checked: CheckedPredictors | None = None,
) -> ModelingData:
    """Select the response column, align the tables and check the values that will be used.

    Parameters
    ----------
    response_table, predictors_table : DataFrame
        Tables as returned by :func:`read_table` (feature ids as a unique string index).
    perturbed_tf : str
        The pTF: the response column's header (exact, case-sensitive) and a predictor column.
    response_path, predictors_path : Path or str
        Where the tables came from, for messages.
    blacklist : iterable of str, optional
        Feature ids to leave out. The pTF's own id is always left out too.
    add_model_variables : sequence of str, optional
        Names that must be predictor columns (``--add_model_variables``).
    exclude_interactor_variables : sequence of str, optional
        Names that should be predictor columns; unknown ones give a warning only. The word
        ``exclude_all`` is not a column name and is never warned about.
    min_rows : int, default 4
        Fewest modeled rows accepted (4-fold stratified cross-validation needs 4).
    checked : CheckedPredictors, optional
        These tables' predictor values, already checked on the rows every TF may model (a
        batch's, ``check_predictor_rows`` with the same blacklist): the TF's rows are taken
        from them. Without it, or when it was made from other tables, every id is matched
        and every column converted and checked here.

    Returns
    -------
    ModelingData

    Raises
    ------
    InputError
        pTF column missing (close matches are listed), unknown ``add_model_variables``, no
        common feature ids, fewer than ``min_rows`` modeled rows, or a non-numeric, missing or
        infinite value in the response column or any predictor column over the modeled rows.
    """
    response_label = f"response file {response_path}"
    predictors_label = f"predictors file {predictors_path}"
    response_columns = [str(column) for column in response_table.columns]
    predictor_columns = [str(column) for column in predictors_table.columns]
    response_position, warning = response_column(response_table, perturbed_tf, response_path)
    warnings = [] if warning is None else [warning]
    warnings += _predictor_variable_warnings(
        predictor_columns,
        perturbed_tf,
        add_model_variables,
        exclude_interactor_variables,
        predictors_label,
    )

    aligned = _rows_from_checked(
        checked, response_table, predictors_table, blacklist, perturbed_tf, min_rows
    )
    if aligned is None:  # aligned anew: every id matched, every column converted and checked
        index, response_rows, predictor_rows, feature_counts = _align(
            response_table,
            predictors_table,
            perturbed_tf,
            blacklist,
            min_rows,
            response_label,
            predictors_label,
        )
        rows = None
    else:
        index, response_rows, matrix, feature_counts, rows = aligned
    response_values, problem = _checked_column(
        response_table.iloc[response_rows, response_position],
        response_columns[response_position],
        index,
    )
    if problem is not None:
        raise _fail(response_label, problem)
    if aligned is None:
        matrix = _checked_predictors(
            predictors_table, predictor_rows, predictor_columns, index, predictors_label
        )
    # The warnings are returned, not logged here: the run logs them into its own log file.
    logger.debug("features for %s: %s", perturbed_tf, feature_counts)
    return ModelingData(
        perturbed_tf=perturbed_tf,
        response=pd.Series(response_values, index=index, name=perturbed_tf, dtype=np.float64),
        predictors=pd.DataFrame(matrix, index=index, columns=pd.Index(predictor_columns)),
        feature_counts=feature_counts,
        warnings=tuple(warnings),
        rows=rows,
    )


def _predictor_variable_warnings(
    predictor_columns: list[str],
    perturbed_tf: str,
    add_model_variables: Sequence[str],
    exclude_interactor_variables: Sequence[str],
    predictors_label: str,
) -> list[str]:
    """The pTF and ``--add_model_variables`` are predictor columns (else raised); a warning for
    each ``--exclude_interactor_variables`` name that is not one."""
    warnings: list[str] = []
    if perturbed_tf not in predictor_columns:
        raise _fail(
            predictors_label,
            _missing_column_problem(perturbed_tf, predictor_columns, "the perturbed TF"),
        )

    known = set(predictor_columns)
    unknown_add = [name for name in dict.fromkeys(add_model_variables) if name not in known]
    if unknown_add:
        raise _fail(
            predictors_label,
            _unknown_variables_problem("--add_model_variables", unknown_add, predictor_columns),
        )
    unknown_exclude = [
        name
        for name in dict.fromkeys(exclude_interactor_variables)
        if name != "exclude_all" and name not in known
    ]
    if unknown_exclude:
        warnings.append(
            f"{predictors_label}: --exclude_interactor_variables "
            f"{_not_columns(unknown_exclude)}; ignored"
        )
    return warnings


def _align(
    response_table: pd.DataFrame,
    predictors_table: pd.DataFrame,
    perturbed_tf: str,
    blacklist: Iterable[str],
    min_rows: int,
    response_label: str,
    predictors_label: str,
) -> tuple[pd.Index, np.ndarray, np.ndarray, dict[str, int]]:
    """The modeled ids, their rows in each table and the feature counts (SPEC §2)."""
    response_ids = _id_strings(response_table.index)
    predictor_ids = _id_strings(predictors_table.index)
    # read_table guarantees this; tables built elsewhere get the same message.
    _check_ids(response_label, response_ids, lambda: _row_places(len(response_ids)))
    _check_ids(predictors_label, predictor_ids, lambda: _row_places(len(predictor_ids)))
    common = set(response_ids).intersection(predictor_ids)
    if not common:
        raise _fail(
            response_label,
            f"no feature ids in common with {predictors_label} (response ids look like "
            f"{', '.join(_short(i) for i in response_ids[:3])}; predictor ids look like "
            f"{', '.join(_short(i) for i in predictor_ids[:3])})",
        )
    excluded = set(blacklist) | {perturbed_tf}
    modeled_ids = sorted(common - excluded)
    feature_counts = {
        "response_rows": len(response_ids),
        "predictor_rows": len(predictor_ids),
        "common": len(common),
        "blacklisted_removed": len(common & excluded),
        "modeled": len(modeled_ids),
    }
    if len(modeled_ids) < min_rows:
        raise _fail(
            response_label,
            f"only {_plural(len(modeled_ids), 'feature')} left to model after alignment with "
            f"{predictors_label} ({feature_counts['common']} in common, "
            f"{feature_counts['blacklisted_removed']} removed by the blacklist and the perturbed "
            f"TF's own id); at least {min_rows} are needed for 4-fold stratified "
            "cross-validation",
        )
    return (
        pd.Index(modeled_ids, name=response_table.index.name),
        pd.Index(response_ids).get_indexer(modeled_ids),
        pd.Index(predictor_ids).get_indexer(modeled_ids),
        feature_counts,
    )


def check_predictor_rows(
    response_table: pd.DataFrame,
    predictors_table: pd.DataFrame,
    blacklist: Iterable[str] = (),
) -> CheckedPredictors | None:
    """The predictors' values on the rows any TF may model, or None if a value there is bad.

    The rows are the feature ids both tables share, less the blacklist (a TF's modeled rows
    are these less its own id). None (some column has a missing, infinite or non-numeric
    value on them) leaves every TF to check its own rows and report what it finds.
    """
    predictor_ids = _id_strings(predictors_table.index)
    response_ids = _id_strings(response_table.index)
    common = set(predictor_ids).intersection(response_ids)
    blacklist = frozenset(blacklist)
    rows = sorted(common - blacklist)
    positions = pd.Index(predictor_ids).get_indexer(rows)
    columns = [str(column) for column in predictors_table.columns]
    try:
        matrix = _checked_predictors(predictors_table, positions, columns, rows, "predictors")
    except InputError:  # each TF checks its own rows and names what it finds
        return None
    return CheckedPredictors(
        pd.Index(rows, name=response_table.index.name),
        tuple(columns),
        matrix,
        tables=(response_table, predictors_table),
        blacklist=blacklist,
        response_rows=pd.Index(response_ids).get_indexer(rows),
        counts=(len(response_ids), len(predictor_ids), len(common), len(common & blacklist)),
    )


def _rows_from_checked(
    checked: CheckedPredictors | None,
    response_table: pd.DataFrame,
    predictors_table: pd.DataFrame,
    blacklist: Iterable[str],
    perturbed_tf: str,
    min_rows: int,
) -> tuple[pd.Index, np.ndarray, np.ndarray, dict[str, int], CheckedRows] | None:
    """A TF's modeled ids, response rows, predictor values, counts and their ``CheckedRows``.

    The same as aligning the tables anew: the checked rows are the ids both tables share less
    the blacklist, sorted; the TF's are those less its own id. None when ``checked`` was made
    from other tables or another blacklist, or too few rows are left (the full path then says
    what is wrong).
    """
    if (
        checked is None
        or checked.tables[0] is not response_table
        or checked.tables[1] is not predictors_table
        or checked.blacklist != frozenset(blacklist)
    ):
        return None
    keep = np.ones(len(checked.ids), dtype=bool)
    if perturbed_tf in checked.ids:
        keep[checked.ids.get_loc(perturbed_tf)] = False
    n_modeled = int(keep.sum())
    if n_modeled < min_rows:
        return None
    n_response, n_predictors, n_common, n_blacklisted = checked.counts
    own_id_removed = n_modeled < len(checked.ids)
    counts = {
        "response_rows": n_response,
        "predictor_rows": n_predictors,
        "common": n_common,
        "blacklisted_removed": n_blacklisted + int(own_id_removed),
        "modeled": n_modeled,
    }
    if not own_id_removed:
        rows = CheckedRows(checked, None)
        return checked.ids, checked.response_rows, checked.values.copy(), counts, rows
    rows = CheckedRows(checked, keep)
    return checked.ids[keep], checked.response_rows[keep], checked.values[keep], counts, rows


def _id_strings(index: pd.Index) -> list[str]:
    """The feature ids of ``index`` as Python strings (``tolist`` first: fast for Arrow)."""
    return [str(feature) for feature in index.tolist()]
