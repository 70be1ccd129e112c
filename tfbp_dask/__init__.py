"""tfbp_dask: transcription-factor binding vs. perturbation-response modelling on Dask.

Public API: ``WorkflowConfig``, ``run(config, client=None)`` and the result
objects; ``read_run(path)`` and ``read_batch(output_dir)`` read finished runs and
batches back. Driver scripts that start a local cluster need the
``if __name__ == "__main__":`` guard.

The names are imported when first used (PEP 562), so that ``import
tfbp_dask`` -- and the command line's help and option errors -- do not pay
for pandas, scikit-learn or Dask.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .api import BatchEntry, RunOutcome, resume, run, run_many
    from .config import WorkflowConfig
    from .results import BatchResult, RunResult, read_batch, read_run
    from .workflow import StageResult, WorkflowResult

_EXPORTS = {
    "BatchEntry": "api",
    "RunOutcome": "api",
    "resume": "api",
    "run": "api",
    "run_many": "api",
    "WorkflowConfig": "config",
    "BatchResult": "results",
    "RunResult": "results",
    "read_batch": "results",
    "read_run": "results",
    "StageResult": "workflow",
    "WorkflowResult": "workflow",
}

__all__ = [
    "BatchEntry",
    "BatchResult",
    "RunOutcome",
    "RunResult",
    "StageResult",
    "WorkflowConfig",
    "WorkflowResult",
    "__version__",
    "read_batch",
    "read_run",
    "resume",
    "run",
    "run_many",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
