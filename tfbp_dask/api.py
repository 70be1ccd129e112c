"""The public entries: ``run(config, client=None)`` for one TF and
``run_many(configs, client=None)`` for a batch of TFs on one cluster.

Order matters: options and inputs are validated before anything is created,
so bad input leaves nothing behind; the run directory is built as a
``.partial`` twin and moved into place when complete. In a batch, the input
files are read once, every TF runs in its own client thread (so a TF's top-N
stage starts as soon as its own stage 1 is done), and one TF's failure is
recorded without stopping the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import WorkflowConfig
from .engines import BootstrapFits
from .errors import InputError
from .execution import Executor, client_security
from .inputs import ModelingData, prepare_modeling_data, read_blacklist, read_table
from .outputs import PARTIAL_SUFFIX, RunDirectory, read_manifest, timestamp_now, write_table
from .workflow import TOPN_SEED_OFFSET, WorkflowResult, choose_seed, run_workflow

if TYPE_CHECKING:
    from distributed import Client
    from distributed.security import Security

logger = logging.getLogger(__name__)

ProgressHook = Callable[[str, str, int, int], None]
"""Called as ``hook(perturbed_tf, stage, bootstraps_done, bootstraps_total)``."""

BatchHook = Callable[[int, int], None]
"""Called as ``hook(tfs_done, tfs_total)`` after each TF of a batch ends."""

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
        self.run_dir.write_plots(wait=False)  # figures of finished stages, once drawn
        if self.hook is not None:
            self.hook(self.tf, stage, done, total)

    def completed(self, label: str) -> BootstrapFits | None:
        return self.run_dir.load_chunks(label)

    def chunk_done(self, label: str, fits: BootstrapFits) -> None:
        self.run_dir.save_chunk(label, fits)

    def stage_done(self, result: WorkflowResult, stage: str) -> None:
        self.latest = result
        self.run_dir.write_stage(result, stage)


def run(
    config: WorkflowConfig,
    client: Client | None = None,
    progress: ProgressHook | None = None,
    security: Security | None = None,
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
    security : distributed.security.Security, optional
        Certificates for joining a ``tls://`` ``scheduler_address``; by
        default the config's ``tls_*`` files, then Dask's configuration.

    Raises
    ------
    OptionError, InputError
        Before anything is created or started.
    """
    config.validate()
    data = _prepare(config, _InputCache())
    with _connect(config, client, security) as executor:
        return _run_loaded(config, data, executor, progress)


@dataclass(frozen=True)
class BatchEntry:
    """How one TF of a batch ended (a row of ``batch_{timestamp}.csv``)."""

    perturbed_tf: str
    status: str
    run_dir: Path | None
    n_significant_all_data: int | None
    n_significant_topn: int | None
    final_selection: tuple[str, ...]
    wall_seconds: float
    error: str
    outcome: RunOutcome | None = None


def run_many(
    configs: Sequence[WorkflowConfig],
    client: Client | None = None,
    progress: ProgressHook | None = None,
    tfs_progress: BatchHook | None = None,
    max_concurrent_tfs: int | None = None,
    resume_batch: bool = False,
    security: Security | None = None,
) -> list[BatchEntry]:
    """Run several TFs concurrently on one cluster; one TF's failure spares the others.

    Parameters
    ----------
    configs : sequence of WorkflowConfig
        One per TF. The cluster settings (``n_cpus``, ``scheduler_address``, ``tls_*``) and
        ``output_dir`` of the first are used for the batch.
    client : distributed.Client, optional
        An existing client; it is not closed.
    progress : callable, optional
        Bootstrap progress, as for ``run``.
    tfs_progress : callable, optional
        Told ``(tfs_done, tfs_total)`` whenever a TF ends.
    max_concurrent_tfs : int, optional
        TFs in flight at once (default: twice the workers, at least 2); bounds
        the client's memory for the bootstrap weights.
    resume_batch : bool
        Continue an interrupted batch TF by TF: in each config's ``output_dir``,
        a TF with a finished run directory is not run again (its entry says
        ``done earlier``), a TF with a ``.partial`` directory is resumed from
        its checkpoints, and the others start afresh.
    security : distributed.security.Security, optional
        Certificates for a ``tls://`` scheduler, as for ``run``.

    Returns
    -------
    list of BatchEntry
        In the order of ``configs``. Also written to
        ``{output_dir}/batch_{timestamp}.csv``.

    Raises
    ------
    OptionError, InputError
        An invalid option, or an input file that cannot be used at all (before
        anything is created). Problems of a single TF are recorded in its entry.
    """
    if not configs:
        raise ValueError("run_many needs at least one config")
    for config in configs:
        config.validate()
    cache = _InputCache()
    for config in configs:  # a bad file fails the whole batch, before anything starts
        cache.table(config.response_file, "response")
        cache.table(config.predictors_file, "predictors")
        cache.blacklist(config.blacklist_file)
    prepared: list[ModelingData | InputError] = []
    for config in configs:
        try:
            prepared.append(_prepare(config, cache))
        except InputError as error:  # this TF only (e.g. absent from the response file)
            prepared.append(error)
    if all(isinstance(data, InputError) for data in prepared):
        raise prepared[0]  # nothing can run: bad input, before any cluster starts
    first = configs[0]
    started = timestamp_now()
    entries: list[BatchEntry | None] = [None] * len(configs)
    with _connect(first, client, security) as executor:
        limit = max_concurrent_tfs or max(2, 2 * executor.n_workers)
        done = 0
        pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="tfbp-tf")
        try:
            futures = {}
            for index, (config, data) in enumerate(zip(configs, prepared)):
                if isinstance(data, InputError):
                    entries[index] = _failed_entry(config.perturbed_tf, data, 0.0)
                    done += 1
                    continue
                earlier = _earlier_runs(config) if resume_batch else ([], [])
                finished, partials = earlier
                if finished:
                    entries[index] = _earlier_entry(config.perturbed_tf, finished[-1])
                    done += 1
                    continue
                resume_from = partials[-1] if partials else None
                futures[pool.submit(_timed_run, config, data, executor, progress, resume_from)] = (
                    index
                )
            if tfs_progress is not None and done:
                tfs_progress(done, len(configs))
            for future in as_completed(futures):
                index = futures[future]
                entries[index] = future.result()
                done += 1
                logger.info(
                    "batch: %d/%d TFs done (%s: %s)",
                    done,
                    len(configs),
                    entries[index].perturbed_tf,
                    entries[index].status,
                )
                if tfs_progress is not None:
                    tfs_progress(done, len(configs))
        except BaseException:
            # Interrupted: TFs not started stay unstarted, running ones stop at
            # their next chunk and keep their .partial directories.
            executor.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    finished = [entry for entry in entries if entry is not None]
    _write_batch_table(first.output_dir, started, finished)
    return finished


def _timed_run(
    config: WorkflowConfig,
    data: ModelingData,
    executor: Executor,
    progress: ProgressHook | None,
    resume_from: Path | None = None,
) -> BatchEntry:
    started = time.perf_counter()
    if executor.stopping:
        return _failed_entry(config.perturbed_tf, RuntimeError("batch interrupted"), 0.0)
    try:
        outcome = _run_loaded(config, data, executor, progress, resume_from)
    except Exception as error:
        logger.error("%s failed: %s: %s", config.perturbed_tf, type(error).__name__, error)
        return _failed_entry(config.perturbed_tf, error, time.perf_counter() - started)
    except BaseException:  # an interrupt inside this TF stops the whole batch
        executor.stop()
        raise
    result = outcome.result
    return BatchEntry(
        perturbed_tf=config.perturbed_tf,
        status="completed" if result.outcome == "completed" else "stopped",
        run_dir=outcome.run_dir,
        n_significant_all_data=(
            len(result.all_data.significant_terms) if result.all_data is not None else None
        ),
        n_significant_topn=len(result.topn.significant_terms) if result.topn is not None else None,
        final_selection=(
            tuple(result.interactors.final_selection["term"])
            if result.interactors is not None
            else ()
        ),
        wall_seconds=time.perf_counter() - started,
        error="" if result.outcome == "completed" else result.outcome,
        outcome=outcome,
    )


_RUN_DIR_NAME = re.compile(r"_\d{8}_\d{6}(?:_\d+)?$")


def _earlier_runs(config: WorkflowConfig) -> tuple[list[Path], list[Path]]:
    """Finished and interrupted run directories of this TF in its output dir, oldest first."""
    prefix = f"{config.perturbed_tf}{config.output_suffix}"
    finished, partials = [], []
    output_dir = Path(config.output_dir)
    candidates = sorted(output_dir.iterdir()) if output_dir.is_dir() else []
    for path in candidates:
        name = path.name.removesuffix(PARTIAL_SUFFIX)
        if not path.is_dir() or not name.startswith(prefix):
            continue
        if not _RUN_DIR_NAME.fullmatch(name[len(prefix) :]):
            continue
        (partials if path.name.endswith(PARTIAL_SUFFIX) else finished).append(path)
    return finished, partials


def _earlier_entry(tf: str, run_dir: Path) -> BatchEntry:
    """The entry of a TF whose run finished in an earlier, interrupted batch."""
    summary = json.loads((run_dir / "input_data" / "data_summary.json").read_text())
    stages = summary.get("stages", {})

    def significant(stage: str) -> int | None:
        return len(stages[stage]["significant_terms"]) if stage in stages else None

    return BatchEntry(
        perturbed_tf=tf,
        status="done earlier",
        run_dir=run_dir,
        n_significant_all_data=significant("all_data"),
        n_significant_topn=significant("topn"),
        final_selection=tuple(stages.get("interactors", {}).get("final_selection", ())),
        wall_seconds=0.0,
        error="",
    )


def _failed_entry(tf: str, error: BaseException, wall: float) -> BatchEntry:
    message = " ".join(str(error).split())
    if not isinstance(error, InputError):
        message = f"{type(error).__name__}: {message}"
    return BatchEntry(tf, "failed", None, None, None, (), wall, message)


def _write_batch_table(output_dir: Path, timestamp: str, entries: Sequence[BatchEntry]) -> Path:
    import pandas as pd

    Path(output_dir).mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(
        {
            "perturbed_tf": [e.perturbed_tf for e in entries],
            "status": [e.status for e in entries],
            "run_dir": [str(e.run_dir) if e.run_dir else "" for e in entries],
            "n_significant_all_data": pd.array(
                [e.n_significant_all_data for e in entries], dtype="Int64"
            ),
            "n_significant_topn": pd.array([e.n_significant_topn for e in entries], dtype="Int64"),
            "final_selection": [";".join(e.final_selection) for e in entries],
            "wall_seconds": [round(e.wall_seconds, 3) for e in entries],
            "error": [e.error for e in entries],
        }
    )
    path = Path(output_dir) / f"batch_{timestamp}"
    write_table(table, path)
    logger.info("batch summary: %s.csv", path)
    return path.with_suffix(".csv")


class _InputCache:
    """Tables and blacklists read once per path for a whole batch."""

    def __init__(self) -> None:
        self._tables: dict[tuple[Path, str], Any] = {}
        self._blacklists: dict[Path, list[str]] = {}

    def table(self, path: Path, role: str) -> Any:
        key = (Path(path).resolve(), role)
        if key not in self._tables:
            self._tables[key] = read_table(Path(path), role)
        return self._tables[key]

    def blacklist(self, path: Path | None) -> list[str]:
        if path is None:
            return []
        key = Path(path).resolve()
        if key not in self._blacklists:
            self._blacklists[key] = read_blacklist(Path(path))
        return self._blacklists[key]


def _prepare(config: WorkflowConfig, cache: _InputCache) -> ModelingData:
    """Read (cached) and align the inputs of one TF."""
    response = cache.table(config.response_file, "response")
    predictors = cache.table(config.predictors_file, "predictors")
    blacklist = cache.blacklist(config.blacklist_file)
    return prepare_modeling_data(
        response,
        predictors,
        config.perturbed_tf,
        response_path=config.response_file,
        predictors_path=config.predictors_file,
        blacklist=blacklist,
        add_model_variables=config.add_model_variables,
        exclude_interactor_variables=config.exclude_interactor_variables,
    )


def available_tfs(response_file: Path, predictors_file: Path) -> list[str]:
    """TFs that are a column of both files, in the predictors file's column order."""
    cache = _InputCache()
    response_columns = set(cache.table(response_file, "response").columns)
    return [c for c in cache.table(predictors_file, "predictors").columns if c in response_columns]


def _connect(
    config: WorkflowConfig, client: Client | None, security: Security | None = None
) -> Executor:
    if security is None and config.scheduler_address is not None:
        security = client_security(config.tls_ca_file, config.tls_cert, config.tls_key)
    return Executor.connect(
        config.n_cpus,
        config.scheduler_address,
        client,
        connect_timeout=config.connect_timeout,
        security=security,
    )


def _run_loaded(
    config: WorkflowConfig,
    data: ModelingData,
    executor: Executor,
    progress: ProgressHook | None,
    resume_from: Path | None = None,
) -> RunOutcome:
    started = time.perf_counter()
    if resume_from is None:
        run_dir = RunDirectory(
            config.output_dir, config.perturbed_tf, config.output_suffix, render=executor.render
        )
        seed = choose_seed(config.random_state)
        run_dir.save_manifest(_manifest(config, seed))
    else:
        run_dir = RunDirectory.reopen(resume_from, render=executor.render)
        seed = _check_resumable(resume_from, config)
    handler = _attach_log(run_dir.log_path)
    result = WorkflowResult(config=config, data=data, seed=seed, stage1_terms=[])
    listener = _Listener(run_dir, data.perturbed_tf, progress)
    try:
        if resume_from is not None:
            logger.info("resuming %s: only bootstraps not checkpointed are fitted", resume_from)
        logger.info("run directory %s (written as %s)", run_dir.final_path, run_dir.path.name)
        logger.info("%s: feature counts %s", data.perturbed_tf, data.feature_counts)
        for message in data.warnings:
            logger.warning(message)
        run_dir.write_inputs(result)
        result = run_workflow(config, data, executor, listener, seed)
        logger.info("%s: %s", data.perturbed_tf, result.outcome)
        run_dir.write_summary(_summary(config, result, executor, time.perf_counter() - started))
    except BaseException as error:
        logger.error(
            "run failed (%s: %s); partial results kept in %s (continue it with --resume %s)",
            type(error).__name__,
            error,
            run_dir.path,
            run_dir.path,
        )
        result = listener.latest or result
        result.outcome = f"failed: {type(error).__name__}: {error}"
        try:
            run_dir.write_summary(_summary(config, result, executor, time.perf_counter() - started))
            try:
                run_dir.write_plots()  # the figures of the stages that finished
            except Exception as plot_error:  # never hide the run's own error
                logger.warning("figures of the finished stages not written: %s", plot_error)
        finally:
            _detach_log(handler)
        raise
    _detach_log(handler)
    return RunOutcome(run_dir.finish(), result)


def resume(
    partial_dir: Path,
    config: WorkflowConfig,
    client: Client | None = None,
    progress: ProgressHook | None = None,
    security: Security | None = None,
) -> RunOutcome:
    """Finish an interrupted run from its ``.partial`` directory.

    Only bootstraps without a checkpoint are fitted; the outputs are the same,
    byte for byte, as those of an uninterrupted run.

    Raises
    ------
    InputError
        ``partial_dir`` is not an interrupted run, or its inputs' sha256 or an
        option that changes numbers differs from ``config``.
    """
    config.validate()
    partial_dir = Path(partial_dir)
    _check_resumable(partial_dir, config)
    data = _prepare(config, _InputCache())
    with _connect(config, client, security) as executor:
        return _run_loaded(config, data, executor, progress, resume_from=partial_dir)


def interrupted_tf(partial_dir: Path) -> str:
    """The perturbed TF of an interrupted run (from its manifest)."""
    manifest = read_manifest(Path(partial_dir))
    if manifest is None:
        raise InputError(
            f"--resume {partial_dir}: not the .partial directory of an interrupted run"
        )
    return str(manifest["perturbed_tf"])


def _manifest(config: WorkflowConfig, seed: int) -> dict[str, Any]:
    inputs = {
        "response_file": _file_record(config.response_file),
        "predictors_file": _file_record(config.predictors_file),
        "blacklist_file": _file_record(config.blacklist_file),
    }
    return {
        "perturbed_tf": config.perturbed_tf,
        "seed": seed,
        "input_sha256": {k: v["sha256"] if v else None for k, v in inputs.items()},
        "options": config.numeric_options(),
    }


def _check_resumable(partial_dir: Path, config: WorkflowConfig) -> int:
    """The seed of the interrupted run, once its inputs and options match ``config``."""
    manifest = read_manifest(partial_dir)
    if not partial_dir.name.endswith(PARTIAL_SUFFIX) or manifest is None:
        raise InputError(
            f"--resume {partial_dir}: not the .partial directory of an interrupted run"
        )
    current = _manifest(config, manifest["seed"])
    if config.random_state in (None, manifest["seed"]):  # a drawn seed is reused
        current["options"]["random_state"] = manifest["options"]["random_state"]
    differences = [
        key
        for section in ("input_sha256", "options")
        for key in sorted(set(manifest[section]) | set(current[section]))
        if manifest[section].get(key) != current[section].get(key)
    ]
    if manifest["perturbed_tf"] != config.perturbed_tf:
        differences.insert(0, "perturbed_tf")
    if differences:
        raise InputError(
            f"--resume {partial_dir}: the run used other inputs or options; differs in: "
            + ", ".join(differences)
        )
    return int(manifest["seed"])


def _attach_log(path: Path) -> logging.Handler:
    """The run log: this thread's records only (a batch runs one TF per thread)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.DEBUG)
    thread = threading.get_ident()
    handler.addFilter(lambda record: record.thread == thread)
    package_logger = logging.getLogger("tfbp_dask")
    package_logger.addHandler(handler)
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    return handler


def _detach_log(handler: logging.Handler) -> None:
    logging.getLogger("tfbp_dask").removeHandler(handler)
    handler.close()


def _file_record(path: Path | None) -> dict[str, Any] | None:
    """Path, size and sha256 of an input file (hashed once per version of the file).

    A run records its inputs twice (manifest, summary) and a batch runs many
    TFs on the same files: the digest is reused while the file's size and
    modification time are unchanged.
    """
    if path is None:
        return None
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        digest = hashlib.sha256(resolved.read_bytes()).hexdigest()
        _DIGESTS[key] = digest
    return {"path": str(resolved), "bytes": stat.st_size, "sha256": digest}


_DIGESTS: dict[tuple[str, int, int], str] = {}


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
