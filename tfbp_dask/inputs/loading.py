"""One perturbed TF's inputs from their paths: the files read, then the rows prepared."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .aligning import ModelingData, prepare_modeling_data, response_column
from .reading import read_blacklist, read_table


def load_inputs(
    response_file: Path,
    predictors_file: Path,
    perturbed_tf: str,
    blacklist_file: Path | None = None,
    add_model_variables: Sequence[str] = (),
    exclude_interactor_variables: Sequence[str] = (),
    min_rows: int = 4,
) -> ModelingData:
    """Read the input files and prepare the modeled rows of one perturbed TF.

    :func:`read_table` on the response table (its pTF column only) and :func:`response_column`
    on it (a misspelt TF is named before the second table is read), then :func:`read_table`
    on the predictors table, :func:`read_blacklist` if a blacklist is given, and
    :func:`prepare_modeling_data`; see those for the rules.

    Parameters
    ----------
    response_file, predictors_file : Path
        CSV or Parquet tables, feature ids in the first column.
    perturbed_tf : str
        The perturbed TF.
    blacklist_file : Path, optional
        One feature id per line.
    add_model_variables, exclude_interactor_variables : sequence of str, optional
        As for :func:`prepare_modeling_data`.
    min_rows : int, default 4
        Fewest modeled rows accepted.

    Returns
    -------
    ModelingData

    Raises
    ------
    InputError
        For any bad input, with a one-line message.
    """
    response_table = read_table(Path(response_file), "response", [perturbed_tf])
    response_column(response_table, perturbed_tf, response_file)
    predictors_table = read_table(Path(predictors_file), "predictors")
    blacklist = read_blacklist(Path(blacklist_file)) if blacklist_file is not None else []
    return prepare_modeling_data(
        response_table,
        predictors_table,
        perturbed_tf,
        response_path=response_file,
        predictors_path=predictors_file,
        blacklist=blacklist,
        add_model_variables=add_model_variables,
        exclude_interactor_variables=exclude_interactor_variables,
        min_rows=min_rows,
    )
