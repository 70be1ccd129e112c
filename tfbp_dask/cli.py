"""The command line: ``tfbp-dask linear_perturbation_binding_modeling …`` (typer).

Flags are spelled as in the user's document of the command, grouped in its
sections. This room maps errors to exit codes and shows progress; it computes
nothing itself.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from .config import DEFAULT_OUTPUT_DIR, OptionError, WorkflowConfig, parse_bins, parse_names
from .errors import InputError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="tfbp-dask",
    help="Model how transcription-factor binding explains the response to perturbing a TF, "
    "with bootstrap LassoCV fits on a Dask cluster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

INPUT_FILES = "Input Files"
INPUT_CONTROL = "Input Control"
DATA_PROCESSING = "Data Processing"
FEATURES = "Feature Engineering"
BINNING = "Binning Options"
MODEL = "Model Parameters"
OUTPUT = "Output Control"
SYSTEM = "System Options"


@app.callback()
def _main_group() -> None:
    """tfbp_dask: TF binding vs perturbation response modelling on Dask."""


@app.command("linear_perturbation_binding_modeling")
def linear_perturbation_binding_modeling(
    response_file: Annotated[
        Path,
        typer.Option(
            "--response_file",
            help="CSV/Parquet: feature ids, then expression columns; one named after the perturbed TF.",
            rich_help_panel=INPUT_FILES,
        ),
    ],
    predictors_file: Annotated[
        Path,
        typer.Option(
            "--predictors_file",
            help="CSV/Parquet: feature ids, then one binding column per TF.",
            rich_help_panel=INPUT_FILES,
        ),
    ],
    perturbed_tf: Annotated[
        str,
        typer.Option(
            "--perturbed_tf",
            help="The perturbed TF: a column of both files (case-sensitive).",
            rich_help_panel=INPUT_FILES,
        ),
    ],
    blacklist_file: Annotated[
        Path | None,
        typer.Option(
            "--blacklist_file",
            help="Feature ids to exclude, one per line.",
            rich_help_panel=INPUT_CONTROL,
        ),
    ] = None,
    n_bootstraps: Annotated[
        int,
        typer.Option(
            "--n_bootstraps", help="Bootstrap samples per stage.", rich_help_panel=INPUT_CONTROL
        ),
    ] = 1000,
    random_state: Annotated[
        int | None,
        typer.Option(
            "--random_state",
            help="Seed of the bootstrap draws (top-N uses seed + 10); drawn and recorded when absent.",
            rich_help_panel=INPUT_CONTROL,
        ),
    ] = None,
    top_n: Annotated[
        int,
        typer.Option(
            "--top_n",
            help="Features (strongest pTF binding) kept for the second round.",
            rich_help_panel=INPUT_CONTROL,
        ),
    ] = 600,
    normalize_sample_weights: Annotated[
        bool,
        typer.Option(
            "--normalize_sample_weights",
            help="Normalise bootstrap weights to sum to 1.",
            rich_help_panel=DATA_PROCESSING,
        ),
    ] = False,
    scale_by_std: Annotated[
        bool,
        typer.Option(
            "--scale_by_std",
            help="Divide design columns by their standard deviation (no centring).",
            rich_help_panel=DATA_PROCESSING,
        ),
    ] = False,
    row_max: Annotated[
        bool,
        typer.Option(
            "--row_max",
            help="Add the row maximum binding as a predictor (all-data stage).",
            rich_help_panel=FEATURES,
        ),
    ] = False,
    squared_pTF: Annotated[
        bool,
        typer.Option(
            "--squared_pTF", help="Add the squared pTF binding term.", rich_help_panel=FEATURES
        ),
    ] = False,
    cubic_pTF: Annotated[
        bool,
        typer.Option(
            "--cubic_pTF", help="Add the cubed pTF binding term.", rich_help_panel=FEATURES
        ),
    ] = False,
    ptf_main_effect: Annotated[
        bool,
        typer.Option(
            "--ptf_main_effect",
            help="Add the pTF binding as a main effect.",
            rich_help_panel=FEATURES,
        ),
    ] = False,
    exclude_interactor_variables: Annotated[
        str | None,
        typer.Option(
            "--exclude_interactor_variables",
            help="Comma list of variables without an interaction term, or exclude_all.",
            rich_help_panel=FEATURES,
        ),
    ] = None,
    add_model_variables: Annotated[
        str | None,
        typer.Option(
            "--add_model_variables",
            help="Comma list of predictor columns added as main effects.",
            rich_help_panel=FEATURES,
        ),
    ] = None,
    bins: Annotated[
        str,
        typer.Option(
            "--bins",
            help="Comma-separated rank bin edges for stratified folds.",
            rich_help_panel=BINNING,
        ),
    ] = "0,8,12,np.inf",
    all_data_ci_level: Annotated[
        float,
        typer.Option(
            "--all_data_ci_level",
            help="CI level (%) for significance in the all-data stage.",
            rich_help_panel=MODEL,
        ),
    ] = 98.0,
    topn_ci_level: Annotated[
        float,
        typer.Option(
            "--topn_ci_level",
            help="CI level (%) for significance in the top-N stage.",
            rich_help_panel=MODEL,
        ),
    ] = 90.0,
    max_iter: Annotated[
        int,
        typer.Option(
            "--max_iter",
            help="Maximum coordinate-descent iterations per fit.",
            rich_help_panel=MODEL,
        ),
    ] = 10000,
    iterative_dropout: Annotated[
        bool,
        typer.Option(
            "--iterative_dropout",
            help="Drop non-significant terms in rounds at a rising CI level.",
            rich_help_panel=MODEL,
        ),
    ] = False,
    stabilization_ci_start: Annotated[
        float,
        typer.Option(
            "--stabilization_ci_start",
            help="First CI level of iterative dropout.",
            rich_help_panel=MODEL,
        ),
    ] = 50.0,
    stabilization_ci_step: Annotated[
        float,
        typer.Option(
            "--stabilization_ci_step",
            help="CI level added per iterative-dropout round.",
            rich_help_panel=MODEL,
        ),
    ] = 2.0,
    stage4_lasso: Annotated[
        bool,
        typer.Option(
            "--stage4_lasso",
            help="LassoCV-based interactor test (default: least squares).",
            rich_help_panel=MODEL,
        ),
    ] = False,
    stage4_topn: Annotated[
        bool,
        typer.Option(
            "--stage4_topn",
            help="Run the interactor test on the top-N features.",
            rich_help_panel=MODEL,
        ),
    ] = False,
    output_dir: Annotated[
        Path,
        typer.Option(
            "--output_dir", help="Base directory of run directories.", rich_help_panel=OUTPUT
        ),
    ] = DEFAULT_OUTPUT_DIR,
    output_suffix: Annotated[
        str,
        typer.Option(
            "--output_suffix",
            help="Appended to the perturbed TF in the run directory name.",
            rich_help_panel=OUTPUT,
        ),
    ] = "",
    n_cpus: Annotated[
        int,
        typer.Option(
            "--n_cpus",
            help="Worker processes of the embedded Dask cluster.",
            rich_help_panel=SYSTEM,
        ),
    ] = 4,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Fitting engine: sklearn (reference LassoCV) or gram (fast, same objective).",
            rich_help_panel=SYSTEM,
        ),
    ] = "sklearn",
    chunk_size: Annotated[
        int | None,
        typer.Option(
            "--chunk_size",
            help="Bootstraps per Dask task (default: about 4 tasks per worker, 10-50 each).",
            rich_help_panel=SYSTEM,
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            "--log_level",
            help="DEBUG, INFO, WARNING or ERROR.",
            rich_help_panel=SYSTEM,
        ),
    ] = "INFO",
) -> None:
    """Run the four-stage bootstrap LassoCV workflow for one perturbed TF."""
    _configure_console_logging(log_level)
    config = WorkflowConfig(
        response_file=response_file,
        predictors_file=predictors_file,
        perturbed_tf=perturbed_tf,
        blacklist_file=blacklist_file,
        n_bootstraps=n_bootstraps,
        random_state=random_state,
        top_n=top_n,
        normalize_sample_weights=normalize_sample_weights,
        scale_by_std=scale_by_std,
        row_max=row_max,
        squared_pTF=squared_pTF,
        cubic_pTF=cubic_pTF,
        ptf_main_effect=ptf_main_effect,
        exclude_interactor_variables=parse_names(exclude_interactor_variables),
        add_model_variables=parse_names(add_model_variables),
        bins=parse_bins(bins),
        all_data_ci_level=all_data_ci_level,
        topn_ci_level=topn_ci_level,
        max_iter=max_iter,
        iterative_dropout=iterative_dropout,
        stabilization_ci_start=stabilization_ci_start,
        stabilization_ci_step=stabilization_ci_step,
        stage4_lasso=stage4_lasso,
        stage4_topn=stage4_topn,
        output_dir=output_dir,
        output_suffix=output_suffix,
        n_cpus=n_cpus,
        engine=engine,
        chunk_size=chunk_size,
    )
    from .api import run
    from .progress import ProgressDisplay

    with ProgressDisplay(sys.stderr) as display:
        outcome = run(config, progress=display.update)
    typer.echo(f"{perturbed_tf}: {outcome.outcome}; results in {outcome.run_dir}")


def _configure_console_logging(level_name: str) -> None:
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise OptionError(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {level_name!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    package_logger = logging.getLogger("tfbp_dask")
    package_logger.addHandler(handler)
    package_logger.setLevel(min(level, logging.INFO))
    # Dask's own INFO chatter (worker start/stop) is not the user's business.
    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.getLogger("bokeh").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: one line on stderr and exit 2 for any bad option or input."""
    try:
        app(args=argv, standalone_mode=False, prog_name="tfbp-dask")
    except (OptionError, InputError) as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", EXIT_INTERRUPTED)
    except TyperException as error:  # typer's own usage errors (bad int, unknown flag …)
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        _fail(" ".join(message.split()), getattr(error, "exit_code", EXIT_BAD_INPUT))
    except Exception as error:  # a failure inside the run: one line, the log has the rest
        _fail(f"run failed: {type(error).__name__}: {error}", EXIT_FAILED)


def _fail(message: str, status: int) -> None:
    print(f"tfbp-dask: error: {message}", file=sys.stderr)
    sys.exit(status)
