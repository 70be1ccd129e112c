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
from typing import Annotated, Any

import typer
from typer.exceptions import TyperException

from ._version import __version__
from .cli_options import COMMAND_OPTIONS, LOG_HANDLERS, config_from_options, with_options
from .config import OptionError, parse_names
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
            metavar="",  # a flag: no <bool> placeholder in --help
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """tfbp_dask: TF binding vs perturbation response modelling on Dask."""


@app.command("linear_perturbation_binding_modeling")
@with_options
def linear_perturbation_binding_modeling(**given: Any) -> None:
    """Run the four-stage bootstrap LassoCV workflow for one perturbed TF (or a batch)."""
    command = {name: given.pop(name) for name in COMMAND_OPTIONS}
    perturbed_tf, perturbed_tfs_file, resume = (
        command["perturbed_tf"], command["perturbed_tfs_file"], command["resume"]
    )  # fmt: skip
    _configure_console_logging(command["log_level"])
    if command["log_handler"] not in LOG_HANDLERS:
        raise OptionError(f"--log-handler must be console or file, got {command['log_handler']!r}")
    if resume is not None and perturbed_tf is None and perturbed_tfs_file is None:
        perturbed_tf = _interrupted_tf(resume)
    tfs = _perturbed_tfs(perturbed_tf, perturbed_tfs_file)
    config = config_from_options(
        given, perturbed_tf=tfs[0] if tfs else "", command_line=_command_line
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
        tfs = available_tfs(config.response_file, config.predictors_file, tables)
        if not tfs:
            raise InputError(
                f"--perturbed_tf all: no column is shared by {config.response_file} and "
                f"{config.predictors_file}"
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
            max_concurrent_tfs=command["max_concurrent_tfs"],
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

from . import summarize  # noqa: E402 - the summarize command's body is its own module

app.command("summarize")(summarize.command)


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
        status = _command().main(args=argv, standalone_mode=False, prog_name="tfbp-dask")
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


def _command() -> Any:
    """The click command typer builds from ``app``, its ``--help`` flags without ``<bool>``."""
    group = typer.main.get_command(app)
    for command in [group, *getattr(group, "commands", {}).values()]:
        _plain_help_flag(command)
    return group


def _plain_help_flag(command: Any) -> None:
    make_help_option = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option


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
