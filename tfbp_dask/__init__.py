"""tfbp_dask: transcription-factor binding vs. perturbation-response modelling on Dask.

Public API: ``WorkflowConfig``, ``run(config, client=None)`` and the result
objects. Driver scripts that start a local cluster need the
``if __name__ == "__main__":`` guard.
"""

from .api import RunOutcome, run
from .config import WorkflowConfig
from .workflow import StageResult, WorkflowResult

__all__ = ["RunOutcome", "StageResult", "WorkflowConfig", "WorkflowResult", "run"]
__version__ = "0.1.0"
