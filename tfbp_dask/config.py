"""Every option of a run, its default and its validation (one frozen dataclass).

The option names and defaults are those of the user's document of the command
(``linear_perturbation_binding_modeling``); ``parse_bins`` and ``parse_names``
turn the command line's comma lists into values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .compat import MODES as COMPAT_MODES
from .compat import PUBLISHED_DEFAULT_BINS, default_bins
from .engines import ENGINES, GIL_FREE_ENGINES
from .errors import check_input_file

DEFAULT_BINS = (0.0, 8.0, 12.0, math.inf)
DEFAULT_OUTPUT_DIR = Path("./linear_perturbation_binding_modeling_results")
EXCLUDE_ALL = "exclude_all"
# How a batch hands its TFs to the cluster: ``per_tf`` (a TF's whole run is one task),
# ``per_chunk`` (the client runs each TF and submits its chunks of bootstraps), or
# ``auto``: per TF when the batch has at least as many TFs as the cluster has threads.
BATCH_TASKS = ("auto", "per_tf", "per_chunk")


NUMERIC_OPTIONS = (
    "perturbed_tf", "n_bootstraps", "random_state", "top_n", "normalize_sample_weights",
    "scale_by_std", "row_max", "squared_pTF", "cubic_pTF", "ptf_main_effect",
    "exclude_interactor_variables", "add_model_variables", "bins", "all_data_ci_level",
    "topn_ci_level", "max_iter", "iterative_dropout", "stabilization_ci_start",
    "stabilization_ci_step", "stage4_lasso", "stage4_topn", "engine",
)  # fmt: skip


TLS_OPTIONS = ("tls_ca_file", "tls_cert", "tls_key")

# Beyond these the run would fail late (memory for the draws, 32-bit iteration
# counters in the compiled engine, processes): refuse them before anything starts.
UPPER_LIMITS = {"n_bootstraps": 1_000_000, "top_n": 10**9, "max_iter": 2**31 - 1, "n_cpus": 1024}


class OptionError(ValueError):
    """An option value out of range; str(err) is one line naming the option."""


def format_bins(bins: tuple[float, ...]) -> str:
    """``--bins`` as the command line spells it ("0,8,12,np.inf")."""
    return ",".join("np.inf" if math.isinf(b) and b > 0 else f"{b:g}" for b in bins)


def parse_bins(text: str) -> tuple[float, ...]:
    """Parse ``--bins`` ("0,8,12,np.inf") into floats; ``np.inf`` and ``inf`` mean infinity."""
    edges = []
    for item in text.split(","):
        item = item.strip()
        if item in ("np.inf", "inf", "Inf", "numpy.inf"):
            edges.append(math.inf)
            continue
        try:
            edges.append(float(item))
        except ValueError:
            raise OptionError(
                f"--bins: {item!r} is not a number (expected e.g. '0,8,12,np.inf')"
            ) from None
    return tuple(edges)


def parse_names(text: str | None) -> tuple[str, ...]:
    """Parse a comma-separated list of names, dropping blanks."""
    if not text:
        return ()
    return tuple(name.strip() for name in text.split(",") if name.strip())


# The sections of ``--help``, as in the user's document of the command.
INPUT_FILES = "Input Files"
INPUT_CONTROL = "Input Control"
DATA_PROCESSING = "Data Processing"
FEATURES = "Feature Engineering"
BINNING = "Binning Options"
MODEL = "Model Parameters"
OUTPUT = "Output Control"
SYSTEM = "System Options"
REQUIRED = MISSING


def option(
    default: Any,
    help: str,
    panel: str | None,
    *,
    parse: Callable[[str], Any] | None = None,
    shown_default: str | None = None,
) -> Any:
    """A field of ``WorkflowConfig`` that is a command-line option ``--{name}``.

    ``help`` and ``panel`` (the section of ``--help``; None: the command line declares the
    option itself) are what the command line shows; ``parse`` turns the typed text into
    the value (comma lists; not given, the field's default). ``shown_default``: what
    ``--help`` gives as the default, when the field's own default is resolved later.
    """
    metadata = {"cli": panel is not None, "help": help, "panel": panel}
    if parse is not None:
        metadata["parse"] = parse
    if shown_default is not None:
        metadata["shown_default"] = shown_default
    if default is MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class WorkflowConfig:
    """All the options of one TF's run (see the command's documentation for each).

    Construct it with keyword arguments; ``validate()`` raises ``OptionError``
    with one line naming the option when a value is out of range.
    """

    # Each option: its default, its help (``--help`` and the README say the same), its
    # section of the user's document. The command line is built from these fields.
    response_file: Path = option(
        REQUIRED,
        "CSV/Parquet: gene ids, then expression columns; one named after the perturbed TF.",
        INPUT_FILES,
    )
    predictors_file: Path = option(
        REQUIRED, "CSV/Parquet: gene ids, then one binding column per TF.", INPUT_FILES
    )
    perturbed_tf: str = option(REQUIRED, "The perturbed TF: a column of both files.", None)
    blacklist_file: Path | None = option(None, "Gene ids to exclude, one per line.", INPUT_CONTROL)
    n_bootstraps: int = option(1000, "Bootstrap samples per stage.", INPUT_CONTROL)
    random_state: int | None = option(
        None,
        "Seed of the bootstrap draws (top-N uses seed + 10); drawn and recorded when absent.",
        INPUT_CONTROL,
    )
    top_n: int = option(
        600, "Genes (strongest pTF binding) kept for the second round.", INPUT_CONTROL
    )
    normalize_sample_weights: bool = option(
        False, "Normalise bootstrap weights to sum to 1.", DATA_PROCESSING
    )
    scale_by_std: bool = option(
        False, "Divide design columns by their standard deviation (no centring).", DATA_PROCESSING
    )
    row_max: bool = option(
        False, "Add the row maximum binding as a predictor (all-data stage).", FEATURES
    )
    squared_pTF: bool = option(False, "Add the squared pTF binding term.", FEATURES)
    cubic_pTF: bool = option(False, "Add the cubed pTF binding term.", FEATURES)
    ptf_main_effect: bool = option(False, "Add the pTF binding as a main effect.", FEATURES)
    exclude_interactor_variables: tuple[str, ...] = option(
        (),
        "Comma list of variables without an interaction term, or exclude_all.",
        FEATURES,
        parse=parse_names,
    )
    add_model_variables: tuple[str, ...] = option(
        (), "Comma list of predictor columns added as main effects.", FEATURES, parse=parse_names
    )
    # None: the default of the --compat mode, set on construction (__post_init__).
    bins: tuple[float, ...] = option(
        None,
        "Comma-separated rank bin edges for stratified folds.",
        BINNING,
        parse=parse_bins,
        shown_default=f"{format_bins(DEFAULT_BINS)}; "
        f"{format_bins(PUBLISHED_DEFAULT_BINS)} with --compat tfbpmodeling",
    )
    all_data_ci_level: float = option(
        98.0, "CI level (%) for significance in the all-data stage.", MODEL
    )
    topn_ci_level: float = option(90.0, "CI level (%) for significance in the top-N stage.", MODEL)
    max_iter: int = option(
        10000,
        "Most iterations of one lasso fit; fits that reach it are counted (max_iter_reached "
        "in model_statistics, data_summary.json) and warned about.",
        MODEL,
    )
    iterative_dropout: bool = option(
        False, "Drop non-significant terms in rounds at a rising CI level.", MODEL
    )
    stabilization_ci_start: float = option(50.0, "First CI level of iterative dropout.", MODEL)
    stabilization_ci_step: float = option(2.0, "CI level added per iterative-dropout round.", MODEL)
    stage4_lasso: bool = option(
        False, "LassoCV-based interactor test (default: least squares).", MODEL
    )
    stage4_topn: bool = option(False, "Run the interactor test on the top-N genes.", MODEL)
    compat: str = option(
        "none",
        "none: the documented behaviour; tfbpmodeling: the numbers of the published "
        "tfbpmodeling code where it departs from its documentation (see docs/compat.md).",
        MODEL,
    )
    output_dir: Path = option(DEFAULT_OUTPUT_DIR, "Base directory of run directories.", OUTPUT)
    output_suffix: str = option(
        "", "Appended to the perturbed TF in the run directory name.", OUTPUT
    )
    no_input_parquet: bool = option(
        False,
        "Write input_data/ as CSV only: no Parquet copies of the processed inputs and "
        "bootstrap draws (about 38 instead of 55 MB per TF at 1000 bootstraps x 6000 "
        "genes; results keep theirs).",
        OUTPUT,
    )
    batch_figures: bool = option(
        False,
        "Batch: draw each TF's diagnostic and interaction figures too (a single run always "
        "draws them; a batch draws its cross-TF heatmap either way).",
        OUTPUT,
    )
    batch_tasks: str = option(
        "auto",
        "Batch: per_tf (a TF's whole run is one task on a worker), per_chunk (this process "
        "runs each TF and sends its chunks of bootstraps), or auto: per_tf when there are "
        "at least as many TFs as worker threads and the workers see --output_dir.",
        SYSTEM,
    )
    n_cpus: int = option(4, "Workers of the embedded Dask cluster (one thread each).", SYSTEM)
    dashboard: bool = option(
        False,
        "Serve the embedded cluster's Dask dashboard on 127.0.0.1 (port 8787 or a free one).",
        SYSTEM,
    )
    engine: str = option(
        "gram",
        "Fitting engine: gram (fast compiled solvers, default) or sklearn (one scikit-learn "
        "LassoCV per bootstrap, the reference).",
        SYSTEM,
    )
    chunk_size: int | None = option(
        None, "Bootstraps per Dask task (default: about 4 tasks per worker, 10-50 each).", SYSTEM
    )
    scheduler_address: str | None = option(
        None,
        "tcp://HOST:PORT or tls://HOST:PORT of a running Dask scheduler, instead of a local "
        "cluster.",
        SYSTEM,
    )
    connect_timeout: float = option(
        20.0, "Seconds to wait for --scheduler_address and its first worker.", SYSTEM
    )
    tls_ca_file: Path | None = option(
        None,
        "tls:// scheduler: the cluster's CA certificate (default: Dask config "
        "distributed.comm.tls.ca-file).",
        SYSTEM,
    )
    tls_cert: Path | None = option(
        None,
        "tls:// scheduler: this client's certificate (default: distributed.comm.tls.client.cert).",
        SYSTEM,
    )
    tls_key: Path | None = option(
        None,
        "tls:// scheduler: this client's private key (default: distributed.comm.tls.client.key).",
        SYSTEM,
    )
    #: The command as typed (``data_summary.json``'s reproducibility record), not an option.
    command_line: str | None = field(default=None, metadata={"cli": False})

    def __post_init__(self) -> None:
        if self.bins is None:  # not given: the documented default, or the published code's
            object.__setattr__(self, "bins", default_bins(self.compat))

    def validate(self) -> WorkflowConfig:
        """Check every value; return self so calls can be chained."""
        for name in ("n_bootstraps", "top_n", "max_iter", "n_cpus"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise OptionError(f"--{name} must be a positive integer, got {value!r}")
            if value > UPPER_LIMITS[name]:
                raise OptionError(f"--{name} must be at most {UPPER_LIMITS[name]}, got {value}")
        if not self.connect_timeout > 0:  # also refuses NaN
            raise OptionError(f"--connect_timeout must be positive, got {self.connect_timeout}")
        self._validate_tls()
        if self.chunk_size is not None and self.chunk_size <= 0:
            raise OptionError(f"--chunk_size must be a positive integer, got {self.chunk_size!r}")
        for name in ("all_data_ci_level", "topn_ci_level", "stabilization_ci_start"):
            value = getattr(self, name)
            if not 0.0 < value < 100.0:
                raise OptionError(f"--{name} must be between 0 and 100 (exclusive), got {value}")
        if not self.stabilization_ci_step > 0:  # also refuses NaN
            raise OptionError(
                f"--stabilization_ci_step must be positive, got {self.stabilization_ci_step}"
            )
        bins = self.bins
        if len(bins) < 2:
            raise OptionError(f"--bins needs at least two edges, got {format_bins(bins)}")
        if any(math.isnan(b) for b in bins):
            raise OptionError(f"--bins must be numbers, got {format_bins(bins)}")
        if bins[0] != 0:
            raise OptionError(f"--bins must start at 0, got {format_bins(bins)}")
        if not math.isinf(bins[-1]) or bins[-1] < 0:
            raise OptionError(f"--bins must end at np.inf, got {format_bins(bins)}")
        if any(b >= a_next for b, a_next in zip(bins, bins[1:])):
            raise OptionError(f"--bins must be strictly increasing, got {format_bins(bins)}")
        if self.batch_tasks not in BATCH_TASKS:
            raise OptionError(
                f"--batch_tasks must be one of {', '.join(BATCH_TASKS)}, got {self.batch_tasks!r}"
            )
        if self.compat not in COMPAT_MODES:
            raise OptionError(
                f"--compat must be one of {', '.join(COMPAT_MODES)}, got {self.compat!r}"
            )
        if self.engine not in ENGINES:
            raise OptionError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.random_state is not None and not 0 <= self.random_state < 2**32 - 10:
            raise OptionError(
                f"--random_state must be between 0 and {2**32 - 11}, got {self.random_state}"
            )
        return self

    @property
    def starts_worker_processes(self) -> bool:
        """True when the run starts worker processes of its own: an embedded cluster for an
        engine that holds the GIL (``sklearn``). ``gram`` gets worker threads of this
        process, and a remote cluster's workers are not ours."""
        return self.scheduler_address is None and self.engine not in GIL_FREE_ENGINES

    def check_files(self) -> WorkflowConfig:
        """Check that the input files exist and are not directories (nothing is read).

        Cheap, so that a mistyped path is refused before anything heavy is
        imported or started; reading the files checks the rest.
        """
        check_input_file(self.response_file, "response")
        check_input_file(self.predictors_file, "predictors")
        if self.blacklist_file is not None:
            check_input_file(self.blacklist_file, "blacklist")
        return self

    def _validate_tls(self) -> None:
        """TLS files go with a ``tls://`` scheduler address (files are checked on connecting)."""
        given = [f"--{name}" for name in TLS_OPTIONS if getattr(self, name) is not None]
        if not given:
            return
        address = self.scheduler_address
        if address is None:
            raise OptionError(
                f"{', '.join(given)} need --scheduler_address tls://HOST:PORT "
                "(the embedded cluster does not use TLS)"
            )
        if not address.startswith("tls://"):
            raise OptionError(
                f"--scheduler_address {address}: {', '.join(given)} given, so the address "
                "must be tls://HOST:PORT"
            )
        if self.tls_key is not None and self.tls_cert is None:
            raise OptionError("--tls_key needs --tls_cert (the certificate it belongs to)")

    @property
    def exclude_all_interactors(self) -> bool:
        """True when ``--exclude_interactor_variables exclude_all`` was given."""
        return EXCLUDE_ALL in self.exclude_interactor_variables

    def numeric_options(self) -> dict[str, Any]:
        """The options that change the numbers (a resumed run must match them)."""
        record = self.options_record()
        numeric = {name: record[name] for name in NUMERIC_OPTIONS}
        if self.compat != "none":  # absent by default, as in runs made before the option
            numeric["compat"] = self.compat
        return numeric

    def options_record(self) -> dict[str, Any]:
        """Every option as plain JSON-ready values (for ``data_summary.json``)."""
        record = asdict(self)
        del record["command_line"]  # recorded under "reproducibility", it changes nothing
        for key, value in record.items():
            if isinstance(value, Path):
                record[key] = str(value)
            elif isinstance(value, tuple):
                record[key] = list(value)
        record["bins"] = format_bins(self.bins)
        return record


#: Every option's default by field name: the command line and the SLURM driver take theirs
#: from here, so that they cannot drift from the library's.
DEFAULTS: dict[str, Any] = {
    field.name: field.default
    for field in fields(WorkflowConfig)
    if field.default is not MISSING and field.name != "command_line"
}
