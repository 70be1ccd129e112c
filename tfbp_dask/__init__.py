"""tfbp_dask: transcription-factor binding vs. perturbation-response modelling on Dask.

Public API: ``WorkflowConfig``, ``run(config, client=None)`` and the result
objects. Driver scripts that start a local cluster need the
``if __name__ == "__main__":`` guard.
"""

from ._version import __version__
from .api import BatchEntry, RunOutcome, resume, run, run_many
from .config import WorkflowConfig
from .workflow import StageResult, WorkflowResult

__all__ = [
    "BatchEntry",
    "RunOutcome",
    "StageResult",
    "WorkflowConfig",
    "WorkflowResult",
    "__version__",
    "resume",
    "run",
    "run_many",
]
