"""The command line: ``tfbp-dask linear_perturbation_binding_modeling …`` (typer).

Flags are spelled as in the user's document of the command, grouped in its
sections. This room maps errors to exit codes and shows progress; it computes
nothing itself.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from . import compat
from ._version import __version__
from .config import DEFAULTS, OptionError, WorkflowConfig, format_bins, parse_bins, parse_names
from .errors import ClusterUnavailable, InputError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
INTERRUPTED_MESSAGE = (
    "interrupted ({signal}); finished chunks are kept in the run's .partial directory "
    "(see the log) and --resume continues it"
)

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


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"tfbp-dask {__version__}")
        raise typer.Exit()


@app.callback()
def _main_group(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
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
        str | None,
        typer.Option(
            "--perturbed_tf",
            help="The perturbed TF: a column of both files (case-sensitive); a comma list, or 'all', runs a batch.",
            rich_help_panel=INPUT_FILES,
        ),
    ] = None,
    perturbed_tfs_file: Annotated[
        Path | None,
        typer.Option(
            "--perturbed_tfs_file",
            help="Batch: a file with one perturbed TF per line.",
            rich_help_panel=INPUT_FILES,
        ),
    ] = None,
    blacklist_file: Annotated[
        Path | None,
        typer.Option(
            "--blacklist_file",
            help="Feature ids to exclude, one per line.",
            rich_help_panel=INPUT_CONTROL,
        ),
    ] = DEFAULTS["blacklist_file"],
    n_bootstraps: Annotated[
        int,
        typer.Option(
            "--n_bootstraps", help="Bootstrap samples per stage.", rich_help_panel=INPUT_CONTROL
        ),
    ] = DEFAULTS["n_bootstraps"],
    random_state: Annotated[
        int | None,
        typer.Option(
            "--random_state",
            help="Seed of the bootstrap draws (top-N uses seed + 10); drawn and recorded when absent.",
            rich_help_panel=INPUT_CONTROL,
        ),
    ] = DEFAULTS["random_state"],
    top_n: Annotated[
        int,
        typer.Option(
            "--top_n",
            help="Features (strongest pTF binding) kept for the second round.",
            rich_help_panel=INPUT_CONTROL,
        ),
    ] = DEFAULTS["top_n"],
    normalize_sample_weights: Annotated[
        bool,
        typer.Option(
            "--normalize_sample_weights",
            help="Normalise bootstrap weights to sum to 1.",
            rich_help_panel=DATA_PROCESSING,
        ),
    ] = DEFAULTS["normalize_sample_weights"],
    scale_by_std: Annotated[
        bool,
        typer.Option(
            "--scale_by_std",
            help="Divide design columns by their standard deviation (no centring).",
            rich_help_panel=DATA_PROCESSING,
        ),
    ] = DEFAULTS["scale_by_std"],
    row_max: Annotated[
        bool,
        typer.Option(
            "--row_max",
            help="Add the row maximum binding as a predictor (all-data stage).",
            rich_help_panel=FEATURES,
        ),
    ] = DEFAULTS["row_max"],
    squared_pTF: Annotated[
        bool,
        typer.Option(
            "--squared_pTF", help="Add the squared pTF binding term.", rich_help_panel=FEATURES
        ),
    ] = DEFAULTS["squared_pTF"],
    cubic_pTF: Annotated[
        bool,
        typer.Option(
            "--cubic_pTF", help="Add the cubed pTF binding term.", rich_help_panel=FEATURES
        ),
    ] = DEFAULTS["cubic_pTF"],
    ptf_main_effect: Annotated[
        bool,
        typer.Option(
            "--ptf_main_effect",
            help="Add the pTF binding as a main effect.",
            rich_help_panel=FEATURES,
        ),
    ] = DEFAULTS["ptf_main_effect"],
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
        str | None,
        typer.Option(
            "--bins",
            help="Comma-separated rank bin edges for stratified folds.",
            rich_help_panel=BINNING,
            show_default=f"{format_bins(DEFAULTS['bins'])}; "
            f"{format_bins(compat.PUBLISHED_DEFAULT_BINS)} with --compat tfbpmodeling",
        ),
    ] = None,
    all_data_ci_level: Annotated[
        float,
        typer.Option(
            "--all_data_ci_level",
            help="CI level (%) for significance in the all-data stage.",
            rich_help_panel=MODEL,
        ),
    ] = DEFAULTS["all_data_ci_level"],
    topn_ci_level: Annotated[
        float,
        typer.Option(
            "--topn_ci_level",
            help="CI level (%) for significance in the top-N stage.",
            rich_help_panel=MODEL,
        ),
    ] = DEFAULTS["topn_ci_level"],
    max_iter: Annotated[
        int,
        typer.Option(
            "--max_iter",
            help=(
                "Cap of every lasso path: coordinate-descent sweeps per alpha (engine "
                "sklearn; gram up to 50 terms), homotopy steps (a term entering or leaving) "
                "per path (gram above 50 terms). Fits that reach it are counted "
                "(max_iter_reached in model_statistics, data_summary.json) and warned about."
            ),
            rich_help_panel=MODEL,
        ),
    ] = DEFAULTS["max_iter"],
    iterative_dropout: Annotated[
        bool,
        typer.Option(
            "--iterative_dropout",
            help="Drop non-significant terms in rounds at a rising CI level.",
            rich_help_panel=MODEL,
        ),
    ] = DEFAULTS["iterative_dropout"],
    stabilization_ci_start: Annotated[
        float,
        typer.Option(
            "--stabilization_ci_start",
            help="First CI level of iterative dropout.",
            rich_help_panel=MODEL,
        ),
    ] = DEFAULTS["stabilization_ci_start"],
    stabilization_ci_step: Annotated[
        float,
        typer.Option(
            "--stabilization_ci_step",
            help="CI level added per iterative-dropout round.",
            rich_help_panel=MODEL,
        ),
    ] = DEFAULTS["stabilization_ci_step"],
    stage4_lasso: Annotated[
        bool,
        typer.Option(
            "--stage4_lasso",
            help="LassoCV-based interactor test (default: least squares).",
            rich_help_panel=MODEL,
        ),
    ] = DEFAULTS["stage4_lasso"],
    stage4_topn: Annotated[
        bool,
        typer.Option(
            "--stage4_topn",
            help="Run the interactor test on the top-N features.",
            rich_help_panel=MODEL,
        ),
    ] = DEFAULTS["stage4_topn"],
    compat_mode: Annotated[
        str,
        typer.Option(
            "--compat",
            help="none: the documented behaviour; tfbpmodeling: the numbers of the published "
            "tfbpmodeling code where it departs from its documentation (see docs/compat.md).",
            rich_help_panel=MODEL,
        ),
    ] = DEFAULTS["compat"],
    output_dir: Annotated[
        Path,
        typer.Option(
            "--output_dir", help="Base directory of run directories.", rich_help_panel=OUTPUT
        ),
    ] = DEFAULTS["output_dir"],
    output_suffix: Annotated[
        str,
        typer.Option(
            "--output_suffix",
            help="Appended to the perturbed TF in the run directory name.",
            rich_help_panel=OUTPUT,
        ),
    ] = DEFAULTS["output_suffix"],
    no_input_parquet: Annotated[
        bool,
        typer.Option(
            "--no_input_parquet",
            help="Write input_data/ as CSV only: no Parquet twins of the processed inputs and "
            "bootstrap draws (about 38 instead of 55 MB per TF at 1000 bootstraps x 6000 "
            "features; results keep theirs).",
            rich_help_panel=OUTPUT,
        ),
    ] = DEFAULTS["no_input_parquet"],
    batch_figures: Annotated[
        bool,
        typer.Option(
            "--batch_figures",
            help="Batch: draw each TF's diagnostic and interaction figures too (a single "
            "run always draws them; a batch draws its cross-TF heatmap either way).",
            rich_help_panel=OUTPUT,
        ),
    ] = DEFAULTS["batch_figures"],
    n_cpus: Annotated[
        int,
        typer.Option(
            "--n_cpus",
            help="Workers of the embedded Dask cluster: threads of this process for the "
            "gram engine, processes for sklearn.",
            rich_help_panel=SYSTEM,
        ),
    ] = DEFAULTS["n_cpus"],
    dashboard: Annotated[
        bool,
        typer.Option(
            "--dashboard",
            help="Serve the embedded cluster's Dask dashboard on 127.0.0.1 (port 8787 or a free one).",
            rich_help_panel=SYSTEM,
        ),
    ] = DEFAULTS["dashboard"],
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Fitting engine: gram (compiled solvers on fold Grams, default) or sklearn (one LassoCV per bootstrap, the reference).",
            rich_help_panel=SYSTEM,
        ),
    ] = DEFAULTS["engine"],
    chunk_size: Annotated[
        int | None,
        typer.Option(
            "--chunk_size",
            help="Bootstraps per Dask task (default: about 4 tasks per worker, 10-50 each).",
            rich_help_panel=SYSTEM,
        ),
    ] = DEFAULTS["chunk_size"],
    scheduler_address: Annotated[
        str | None,
        typer.Option(
            "--scheduler_address",
            help="tcp://HOST:PORT or tls://HOST:PORT of a running Dask scheduler, instead of a local cluster.",
            rich_help_panel=SYSTEM,
        ),
    ] = DEFAULTS["scheduler_address"],
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect_timeout",
            help="Seconds to wait for --scheduler_address and its first worker.",
            rich_help_panel=SYSTEM,
        ),
    ] = DEFAULTS["connect_timeout"],
    tls_ca_file: Annotated[
        Path | None,
        typer.Option(
            "--tls_ca_file",
            help="tls:// scheduler: the cluster's CA certificate (default: Dask config distributed.comm.tls.ca-file).",
            rich_help_panel=SYSTEM,
        ),
    ] = DEFAULTS["tls_ca_file"],
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls_cert",
            help="tls:// scheduler: this client's certificate (default: distributed.comm.tls.client.cert).",
            rich_help_panel=SYSTEM,
        ),
    ] = DEFAULTS["tls_cert"],
    tls_key: Annotated[
        Path | None,
        typer.Option(
            "--tls_key",
            help="tls:// scheduler: this client's private key (default: distributed.comm.tls.client.key).",
            rich_help_panel=SYSTEM,
        ),
    ] = DEFAULTS["tls_key"],
    batch_tasks: Annotated[
        str,
        typer.Option(
            "--batch_tasks",
            help="Batch: per_tf (a TF's whole run is one task on a worker), per_chunk (this "
            "process runs each TF and sends its chunks of bootstraps), or auto: per_tf when "
            "there are at least as many TFs as worker threads and the workers see --output_dir.",
            rich_help_panel=SYSTEM,
        ),
    ] = DEFAULTS["batch_tasks"],
    max_concurrent_tfs: Annotated[
        int | None,
        typer.Option(
            "--max_concurrent_tfs",
            help="Batch: TFs in flight at once (default: 2 per worker).",
            rich_help_panel=SYSTEM,
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Finish an interrupted run: its .partial directory; for a batch, the batch's output directory (same inputs and options).",
            rich_help_panel=OUTPUT,
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
    log_handler: Annotated[
        str,
        typer.Option(
            "--log-handler",
            "--log_handler",
            help="console or file. Accepted for compatibility with tfbpmodeling command "
            "lines and otherwise ignored: the log always goes to the console and to the "
            "run directory's log file.",
            rich_help_panel=SYSTEM,
        ),
    ] = "console",
) -> None:
    """Run the four-stage bootstrap LassoCV workflow for one perturbed TF (or a batch)."""
    _configure_console_logging(log_level)
    if log_handler not in ("console", "file"):
        raise OptionError(f"--log-handler must be console or file, got {log_handler!r}")
    if resume is not None and perturbed_tf is None and perturbed_tfs_file is None:
        perturbed_tf = _interrupted_tf(resume)
    tfs = _perturbed_tfs(perturbed_tf, perturbed_tfs_file)
    config = WorkflowConfig(
        response_file=response_file,
        predictors_file=predictors_file,
        perturbed_tf=tfs[0] if tfs else "",
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
        bins=parse_bins(bins) if bins is not None else compat.default_bins(compat_mode),
        all_data_ci_level=all_data_ci_level,
        topn_ci_level=topn_ci_level,
        max_iter=max_iter,
        iterative_dropout=iterative_dropout,
        stabilization_ci_start=stabilization_ci_start,
        stabilization_ci_step=stabilization_ci_step,
        stage4_lasso=stage4_lasso,
        stage4_topn=stage4_topn,
        compat=compat_mode,
        output_dir=output_dir,
        output_suffix=output_suffix,
        no_input_parquet=no_input_parquet,
        batch_figures=batch_figures,
        batch_tasks=batch_tasks,
        n_cpus=n_cpus,
        dashboard=dashboard,
        engine=engine,
        chunk_size=chunk_size,
        scheduler_address=scheduler_address,
        connect_timeout=connect_timeout,
        tls_ca_file=tls_ca_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
        command_line=_command_line,
    ).validate()
    config.check_files()
    global _no_worker_processes
    _no_worker_processes = not config.starts_worker_processes
    # Only now the heavy part: pandas, Dask, the engines.
    from .api import available_tfs, run, run_many
    from .api import resume as resume_run
    from .progress import ProgressDisplay
    from .runner import InputCache

    tables = InputCache()  # read once, for the list of TFs and for the batch
    if tfs == [ALL_TFS]:
        tfs = available_tfs(response_file, predictors_file, tables)
        if not tfs:
            raise InputError(
                f"--perturbed_tf all: no column is shared by {response_file} and {predictors_file}"
            )
    batch = len(tfs) != 1 or perturbed_tfs_file is not None
    if resume is not None and batch:
        # A batch resumes TF by TF from its output directory.
        config = replace(config, output_dir=resume)
    if not batch:
        single = replace(config, perturbed_tf=tfs[0])
        with ProgressDisplay(sys.stderr) as display:
            if resume is not None:
                outcome = resume_run(resume, single, progress=display.update)
            else:
                outcome = run(single, progress=display.update)
        typer.echo(f"{tfs[0]}: {outcome.outcome}; results in {outcome.run_dir}")
        return
    configs = [replace(config, perturbed_tf=tf) for tf in tfs]
    with ProgressDisplay(sys.stderr, batch=True) as display:
        entries = run_many(
            configs,
            progress=display.update,
            tfs_progress=display.update_tfs,
            max_concurrent_tfs=max_concurrent_tfs,
            resume_batch=resume is not None,
            cache=tables,
        )
    for entry in entries:
        where = entry.run_dir if entry.run_dir else entry.error
        typer.echo(f"{entry.perturbed_tf}: {entry.status}; {where}")
    failed = [entry.perturbed_tf for entry in entries if entry.status == "failed"]
    if failed:
        raise typer.Exit(EXIT_FAILED)


ALL_TFS = "all"


def _interrupted_tf(partial_dir: Path) -> str:
    """The perturbed TF of the interrupted run ``--resume`` names (read from its manifest)."""
    from .precheck import interrupted_tf  # reads a JSON file: nothing heavy

    return interrupted_tf(partial_dir)


def _perturbed_tfs(perturbed_tf: str | None, tfs_file: Path | None) -> list[str]:
    """The TFs named by ``--perturbed_tf`` (one, a comma list or ``all``) and/or the file."""
    tfs = list(parse_names(perturbed_tf))
    if tfs_file is not None:
        try:
            lines = Path(tfs_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"perturbed TFs file {tfs_file}: cannot read it ({error})") from None
        tfs += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        if not tfs:
            raise InputError(f"perturbed TFs file {tfs_file}: names no TF")
    if not tfs:
        raise OptionError("--perturbed_tf (or --perturbed_tfs_file) is required")
    if ALL_TFS in tfs and len(tfs) > 1:
        raise OptionError("--perturbed_tf all cannot be combined with other TF names")
    duplicates = sorted({tf for tf in tfs if tfs.count(tf) > 1})
    if duplicates:
        raise OptionError(f"--perturbed_tf names a TF more than once: {', '.join(duplicates)}")
    return tfs


_console_handler: logging.Handler | None = None
# True once the command is known to start no worker process of its own (a remote
# cluster, or the gram engine's threads): then a bad input may end the process at once.
_no_worker_processes = False
_command_line: str | None = None  # as typed; set by main


def typed_command(argv: list[str]) -> str:
    """The command line as a shell would take it back (``python -m tfbp_dask`` or the script)."""
    program = Path(argv[0]).name
    if program == "__main__.py":
        program = "python -m tfbp_dask"
    return " ".join([program, *(shlex.quote(arg) for arg in argv[1:])])


def _configure_console_logging(level_name: str) -> None:
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise OptionError(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {level_name!r}")
    global _console_handler
    package_logger = logging.getLogger("tfbp_dask")
    if _console_handler is not None:  # repeated in-process calls replace, not stack, it
        package_logger.removeHandler(_console_handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    package_logger.addHandler(handler)
    _console_handler = handler
    package_logger.setLevel(min(level, logging.INFO))
    # Dask's own INFO chatter (worker start/stop) is not the user's business.
    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.getLogger("bokeh").setLevel(logging.ERROR)
    # A refused TLS handshake is also logged by tornado; the error line says why.
    logging.getLogger("tornado.general").setLevel(max(level, logging.ERROR))


class Terminated(BaseException):
    """SIGTERM arrived: stop like Ctrl-C, keep the partial results, exit 143."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: one line on stderr and exit 2 for any bad option or input."""
    global _command_line
    _command_line = typed_command(sys.argv if argv is None else ["tfbp-dask", *argv])
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        status = app(args=argv, standalone_mode=False, prog_name="tfbp-dask")
    except (OptionError, InputError, ClusterUnavailable) as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except (typer.Abort, KeyboardInterrupt):
        _fail(INTERRUPTED_MESSAGE.format(signal="SIGINT"), EXIT_INTERRUPTED)
    except Terminated:
        _fail(INTERRUPTED_MESSAGE.format(signal="SIGTERM"), EXIT_TERMINATED)
    except TyperException as error:  # typer's own usage errors (bad int, unknown flag …)
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        _fail(" ".join(message.split()), getattr(error, "exit_code", EXIT_BAD_INPUT))
    except Exception as error:  # a failure inside the run: one line, the log has the rest
        _fail(f"run failed: {type(error).__name__}: {error}", EXIT_FAILED)
    if isinstance(status, int) and status != 0:
        sys.exit(status)


def entry() -> None:
    """The console script and ``python -m tfbp_dask``: ``main``, then a quick exit if it is safe.

    Once a command has succeeded, every file it wrote is closed and its cluster is
    closed; tearing the interpreter down after that (freeing the compiled kernels,
    pandas', Dask's and matplotlib's modules object by object) took ~0.7 s of a
    short run and serves nobody. So the log and the streams are flushed and the
    process ends at once. The same after bad input (exit 2, nothing was written)
    when what starts in the background ends with this process: the ``gram``
    engine's worker threads, or a connection to a remote scheduler. Waiting for
    them to come up and be closed took 1-1.5 s. Worker processes (``--engine sklearn``) are
    stopped the ordinary way, as is every other failure. ``main`` itself never
    ends the process this way: tests and scripts call it in theirs.
    """
    try:
        main()
    except SystemExit as stop:
        if stop.code != EXIT_BAD_INPUT or not _no_worker_processes:
            raise
        status = EXIT_BAD_INPUT
    else:
        status = 0
    logging.shutdown()  # flushes and closes the handlers, the run log's included
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _fail(message: str, status: int) -> None:
    message = " ".join(message.split())  # one line, whatever the exception's text held
    print(f"tfbp-dask: error: {message}", file=sys.stderr)
    if _console_handler is not None:
        # A cluster still starting in the background is stopped before the process
        # ends; what it logs meanwhile must not follow the error line.
        _console_handler.setLevel(logging.CRITICAL + 1)
    sys.exit(status)
