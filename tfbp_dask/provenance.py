"""What a run records about itself, and what a resumed run must match.

``manifest`` and ``check_resumable`` guard ``--resume`` (same inputs' sha256,
same options that change numbers, the seed reused); ``summary`` is
``data_summary.json``; ``attach_log``/``detach_log`` keep each run's log file
to its own thread; ``earlier_runs`` finds a TF's finished and interrupted run
directories for a resumed batch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import re
import threading
import weakref
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import compat
from .checkpoints import unreadable_checkpoints
from .config import WorkflowConfig
from .engines import N_ITER_MEANING
from .errors import InputError
from .outputs import PARTIAL_SUFFIX
from .precheck import read_manifest
from .workflow import WorkflowResult

if TYPE_CHECKING:
    from .execution import Executor

REPORTED_PACKAGES = (
    "tfbp-dask",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "dask",
    "distributed",
    "pyarrow",
    "numba",
    "llvmlite",
)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_RUN_DIR_NAME = re.compile(r"_\d{8}_\d{6}(?:_\d+)?$")
_DIGESTS: dict[tuple[str, int, int], str] = {}


def manifest(config: WorkflowConfig, seed: int) -> dict[str, Any]:
    """The TF, seed, inputs' sha256 and number-changing options of a run."""
    inputs = {
        "response_file": file_record(config.response_file),
        "predictors_file": file_record(config.predictors_file),
        "blacklist_file": file_record(config.blacklist_file),
    }
    return {
        "perturbed_tf": config.perturbed_tf,
        "seed": seed,
        "input_sha256": {k: v["sha256"] if v else None for k, v in inputs.items()},
        "options": config.numeric_options(),
    }


def check_resumable(partial_dir: Path, config: WorkflowConfig) -> int:
    """The seed of the interrupted run, once its inputs and options match ``config``."""
    recorded = read_manifest(partial_dir)
    if not partial_dir.name.endswith(PARTIAL_SUFFIX) or recorded is None:
        raise InputError(
            f"--resume {partial_dir}: not the .partial directory of an interrupted run"
        )
    current = manifest(config, recorded["seed"])
    if config.random_state in (None, recorded["seed"]):  # a drawn seed is reused
        current["options"]["random_state"] = recorded["options"]["random_state"]
    differences = [
        key
        for section in ("input_sha256", "options")
        for key in sorted(set(recorded[section]) | set(current[section]))
        if recorded[section].get(key) != current[section].get(key)
    ]
    if recorded["perturbed_tf"] != config.perturbed_tf:
        differences.insert(0, "perturbed_tf")
    if differences:
        raise InputError(
            f"--resume {partial_dir}: the run used other inputs or options; differs in: "
            + ", ".join(differences)
        )
    old = unreadable_checkpoints(partial_dir)
    if old:
        raise InputError(
            f"--resume {partial_dir}: its checkpoints were written by an older tfbp_dask "
            f"(e.g. {old[0]} has no max_iter_reached column) and cannot be continued; "
            "start the run again"
        )
    return int(recorded["seed"])


def earlier_runs(config: WorkflowConfig) -> tuple[list[Path], list[Path]]:
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


def attach_log(path: Path) -> logging.Handler:
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


def detach_log(handler: logging.Handler) -> None:
    logging.getLogger("tfbp_dask").removeHandler(handler)
    handler.close()


def file_record(path: Path | None) -> dict[str, Any] | None:
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


def package_versions() -> dict[str, str]:
    """Python's and the reported packages' versions (looked up once per process)."""
    return dict(_package_versions())


@functools.cache
def _package_versions() -> tuple[tuple[str, str], ...]:
    versions = {"python": platform.python_version()}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return tuple(versions.items())


def machine_record() -> dict[str, Any]:
    """This process's CPU, operating system and the CPU the compiled solver targets."""
    return dict(_machine_record())


@functools.cache
def _machine_record() -> tuple[tuple[str, Any], ...]:
    record: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
    }
    try:  # numba compiles the gram kernels for this CPU name and these features
        import llvmlite.binding as llvm
        from numba.core import config as numba_config

        record["solver_cpu_target"] = {
            "cpu_name": numba_config.CPU_NAME or llvm.get_host_cpu_name(),
            "cpu_features": numba_config.CPU_FEATURES or llvm.get_host_cpu_features().flatten(),
            "fastmath": False,
        }
    except ImportError:
        record["solver_cpu_target"] = None
    return tuple(record.items())


def _cpu_model() -> str:
    """The CPU's name as the kernel reports it (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def reproducibility(config: WorkflowConfig, executor: Executor) -> dict[str, Any]:
    """What reproducing the run needs besides its inputs and options.

    The command as typed (None when the run came from Python), tfbp_dask's,
    Python's, numba's and llvmlite's versions, the machine that wrote the run
    (in a batch of whole-TF tasks, the worker that fitted it) and, for a
    cluster, each worker machine's CPU (those fitted the chunks).
    """
    versions = package_versions()
    return {
        "command_line": config.command_line,
        "tfbp_dask": versions.get("tfbp-dask"),
        "python": versions["python"],
        "python_implementation": platform.python_implementation(),
        "numba": versions.get("numba"),
        "llvmlite": versions.get("llvmlite"),
        "machine": machine_record(),
        "worker_machines": worker_machines(executor),
    }


def worker_machines(executor: Executor) -> list[dict[str, Any]] | None:
    """Distinct CPU records of the cluster's workers with how many workers have each.

    None where there is no cluster client (the fits ran in this process).
    """
    client = getattr(executor, "client", None)
    if client is None:
        return None
    if client not in _WORKER_MACHINES:
        try:
            records = client.run(machine_record)
        except Exception:  # a lost scheduler: the record says so rather than fail the run
            return None
        counts: dict[str, list[Any]] = {}
        for record in records.values():
            text = json.dumps(record, sort_keys=True)
            counts.setdefault(text, [record, 0])[1] += 1
        _WORKER_MACHINES[client] = [{**r, "workers": n} for r, n in counts.values()]
    return _WORKER_MACHINES[client]


# Asked once per client (a batch's TFs share one).
_WORKER_MACHINES: weakref.WeakKeyDictionary[Any, list[dict[str, Any]]] = weakref.WeakKeyDictionary()


def summary(
    config: WorkflowConfig, result: WorkflowResult, executor: Executor, wall: float
) -> dict[str, Any]:
    """``data_summary.json``: inputs, counts, stages, options, seeds, cluster, packages."""
    stages = {}
    for stage in (result.all_data, result.topn):
        if stage is not None:
            stages[stage.name] = {
                "n_rows": len(stage.rows),
                "seed": stage.seed,
                "ci_level": stage.ci_level,
                "terms": [term.name for term in stage.terms],
                "significant_terms": [term.name for term in stage.significant_terms],
                "solver": stage.solver,
                "solver_note": stage.solver_note,
                "n_iter_counts": N_ITER_MEANING[stage.solver],
                "n_fits_max_iter_reached": int(stage.fits.max_iter_reached.sum()),
                # CPU time of the final fits' engine calls (fitted in this run, not resumed).
                "fit_cpu_seconds": round(stage.fits.cpu_seconds, 3),
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
        if result.interactors.lasso_fit is not None:
            stages["interactors"]["lasso_fit"] = result.interactors.lasso_fit
    return {
        "perturbed_tf": result.data.perturbed_tf,
        "inputs": {
            "response_file": file_record(config.response_file),
            "predictors_file": file_record(config.predictors_file),
            "blacklist_file": file_record(config.blacklist_file),
        },
        "feature_counts": dict(result.data.feature_counts),
        "warnings": list(result.data.warnings),
        "stage1_terms": [term.name for term in result.stage1_terms],
        "stages": stages,
        "options": config.options_record(),
        "seed": result.seed,
        "seeds": {"all_data": result.seed, "topn": compat.topn_seed(config, result.seed)},
        "compat": compat.record(config, result.seed),
        "seed_source": "--random_state" if config.random_state is not None else "os entropy",
        "engine": config.engine,
        "cluster": executor.describe(),
        "packages": package_versions(),
        "reproducibility": reproducibility(config, executor),
        "wall_seconds": {
            **{k: round(v, 3) for k, v in result.stage_seconds.items()},
            "total": round(wall, 3),
        },
        "outcome": result.outcome,
    }
