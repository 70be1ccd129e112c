"""Every option of a run, its default and its validation (one frozen dataclass).

The option names and defaults are those of the user's document of the command
(``linear_perturbation_binding_modeling``); ``parse_bins`` and ``parse_names``
turn the command line's comma lists into values.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .compat import MODES as COMPAT_MODES
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


@dataclass(frozen=True)
class WorkflowConfig:
    """All the options of one TF's run (see the command's documentation for each).

    Construct it with keyword arguments; ``validate()`` raises ``OptionError``
    with one line naming the option when a value is out of range.
    """

    response_file: Path
    predictors_file: Path
    perturbed_tf: str
    blacklist_file: Path | None = None
    n_bootstraps: int = 1000
    random_state: int | None = None
    top_n: int = 600
    normalize_sample_weights: bool = False
    scale_by_std: bool = False
    row_max: bool = False
    squared_pTF: bool = False
    cubic_pTF: bool = False
    ptf_main_effect: bool = False
    exclude_interactor_variables: tuple[str, ...] = ()
    add_model_variables: tuple[str, ...] = ()
    bins: tuple[float, ...] = DEFAULT_BINS
    all_data_ci_level: float = 98.0
    topn_ci_level: float = 90.0
    max_iter: int = 10000
    iterative_dropout: bool = False
    stabilization_ci_start: float = 50.0
    stabilization_ci_step: float = 2.0
    stage4_lasso: bool = False
    stage4_topn: bool = False
    #: ``none`` (the documented behaviour) or ``tfbpmodeling`` (the published code's
    #: numbers, see ``compat.py``).
    compat: str = "none"
    output_dir: Path = DEFAULT_OUTPUT_DIR
    output_suffix: str = ""
    no_input_parquet: bool = False
    batch_figures: bool = False
    batch_tasks: str = "auto"
    n_cpus: int = 4
    dashboard: bool = False
    engine: str = "gram"
    chunk_size: int | None = None
    scheduler_address: str | None = None
    connect_timeout: float = 20.0
    tls_ca_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: The command as typed (``data_summary.json``'s reproducibility record), not an option.
    command_line: str | None = None

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


def format_bins(bins: tuple[float, ...]) -> str:
    """``--bins`` as the command line spells it ("0,8,12,np.inf")."""
    return ",".join("np.inf" if math.isinf(b) and b > 0 else f"{b:g}" for b in bins)
