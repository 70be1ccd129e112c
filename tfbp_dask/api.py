"""The public entry: ``run(config, client=None)`` for one TF.

Order matters: options and inputs are validated before anything is created,
so bad input leaves nothing behind; the run directory is built as a
``.partial`` twin and moved into place when complete.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import WorkflowConfig
from .execution import Executor
from .inputs import ModelingData, load_inputs
from .outputs import RunDirectory
from .workflow import TOPN_SEED_OFFSET, WorkflowResult, choose_seed, run_workflow

if TYPE_CHECKING:
    from distributed import Client

logger = logging.getLogger(__name__)

ProgressHook = Callable[[str, str, int, int], None]
"""Called as ``hook(perturbed_tf, stage, bootstraps_done, bootstraps_total)``."""

REPORTED_PACKAGES = (
    "tfbp-dask",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "dask",
    "distributed",
    "pyarrow",
)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class RunOutcome:
    """A finished run: where its files are and what it computed."""

    run_dir: Path
    result: WorkflowResult

    @property
    def outcome(self) -> str:
        return self.result.outcome


class _Listener:
    """Writes each stage's files as soon as the stage is done and forwards progress."""

    def __init__(self, run_dir: RunDirectory, tf: str, hook: ProgressHook | None) -> None:
        self.run_dir = run_dir
        self.tf = tf
        self.hook = hook
        self.latest: WorkflowResult | None = None

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.hook is not None:
            self.hook(self.tf, stage, done, total)

    def stage_done(self, result: WorkflowResult, stage: str) -> None:
        self.latest = result
        self.run_dir.write_stage(result, stage)


def run(
    config: WorkflowConfig,
    client: Client | None = None,
    progress: ProgressHook | None = None,
) -> RunOutcome:
    """Run the whole workflow for one TF and write its run directory.

    Parameters
    ----------
    config : WorkflowConfig
    client : distributed.Client, optional
        An existing client to submit to; it is not closed. Without it, the
        config's ``scheduler_address`` is joined or a local cluster of
        ``n_cpus`` workers is started (and closed at the end).
    progress : callable, optional
        Told ``(perturbed_tf, stage, done, total)`` after every finished chunk.

    Raises
    ------
    OptionError, InputError
        Before anything is created or started.
    """
    config.validate()
    data = load_inputs(
        config.response_file,
        config.predictors_file,
        config.perturbed_tf,
        blacklist_file=config.blacklist_file,
        add_model_variables=config.add_model_variables,
        exclude_interactor_variables=config.exclude_interactor_variables,
    )
    with Executor.connect(config.n_cpus, config.scheduler_address, client) as executor:
        return _run_loaded(config, data, executor, progress)


def _run_loaded(
    config: WorkflowConfig, data: ModelingData, executor: Executor, progress: ProgressHook | None
) -> RunOutcome:
    started = time.perf_counter()
    run_dir = RunDirectory(config.output_dir, config.perturbed_tf, config.output_suffix)
    handler = _attach_log(run_dir.log_path)
    seed = choose_seed(config.random_state)
    result = WorkflowResult(config=config, data=data, seed=seed, stage1_terms=[])
    listener = _Listener(run_dir, data.perturbed_tf, progress)
    try:
        logger.info("run directory %s (written as %s)", run_dir.final_path, run_dir.path.name)
        for message in data.warnings:
            logger.warning(message)
        run_dir.write_inputs(result)
        result = run_workflow(config, data, executor, listener, seed)
        logger.info("%s: %s", data.perturbed_tf, result.outcome)
        run_dir.write_summary(_summary(config, result, executor, time.perf_counter() - started))
    except BaseException as error:
        logger.error(
            "run failed (%s: %s); partial results kept in %s",
            type(error).__name__,
            error,
            run_dir.path,
        )
        result = listener.latest or result
        result.outcome = f"failed: {type(error).__name__}: {error}"
        try:
            run_dir.write_summary(_summary(config, result, executor, time.perf_counter() - started))
        finally:
            _detach_log(handler)
        raise
    _detach_log(handler)
    return RunOutcome(run_dir.finish(), result)


def _attach_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.DEBUG)
    package_logger = logging.getLogger("tfbp_dask")
    package_logger.addHandler(handler)
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    return handler


def _detach_log(handler: logging.Handler) -> None:
    logging.getLogger("tfbp_dask").removeHandler(handler)
    handler.close()


def _file_record(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    content = Path(path).read_bytes()
    return {
        "path": str(Path(path).resolve()),
        "bytes": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def _package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _summary(
    config: WorkflowConfig, result: WorkflowResult, executor: Executor, wall: float
) -> dict[str, Any]:
    stages = {}
    for stage in (result.all_data, result.topn):
        if stage is not None:
            stages[stage.name] = {
                "n_rows": len(stage.rows),
                "seed": stage.seed,
                "ci_level": stage.ci_level,
                "terms": [term.name for term in stage.terms],
                "significant_terms": [term.name for term in stage.significant_terms],
                "dropout_rounds": [
                    {"round": r.round, "ci_level": r.ci_level, "terms_kept": r.terms_kept}
                    for r in stage.dropout_rounds
                ],
            }
    if result.interactors is not None:
        stages["interactors"] = {
            "method": result.interactors.method,
            "n_rows": result.interactors.n_rows,
            "final_selection": result.interactors.final_selection["term"].tolist(),
        }
    return {
        "perturbed_tf": result.data.perturbed_tf,
        "inputs": {
            "response_file": _file_record(config.response_file),
            "predictors_file": _file_record(config.predictors_file),
            "blacklist_file": _file_record(config.blacklist_file),
        },
        "feature_counts": dict(result.data.feature_counts),
        "warnings": list(result.data.warnings),
        "stage1_terms": [term.name for term in result.stage1_terms],
        "stages": stages,
        "options": config.options_record(),
        "seed": result.seed,
        "seeds": {"all_data": result.seed, "topn": result.seed + TOPN_SEED_OFFSET},
        "seed_source": "--random_state" if config.random_state is not None else "os entropy",
        "engine": config.engine,
        "cluster": executor.describe(),
        "packages": _package_versions(),
        "wall_seconds": {
            **{k: round(v, 3) for k, v in result.stage_seconds.items()},
            "total": round(wall, 3),
        },
        "outcome": result.outcome,
    }
