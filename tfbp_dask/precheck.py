"""What the command line can refuse before pandas and Dask are imported.

A ``--resume`` directory that holds no interrupted run is refused from its manifest alone
(``interrupted_tf``). Checks of the tables' contents are not made here: ``tfbp_dask.inputs``
reports a file's problems in one order (encoding, CSV structure, ids, then columns and
values), and a check of the header line alone could name a later problem before an
earlier one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InputError

#: An interrupted run's record of its TF, seed, inputs and options (``<run>.partial/``).
MANIFEST = "run_manifest.json"


def read_manifest(partial_path: Path) -> dict[str, Any] | None:
    """The manifest of an interrupted run, or None when there is none (or it is unreadable)."""
    path = Path(partial_path) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "perturbed_tf" in manifest else None


def interrupted_tf(partial_dir: Path) -> str:
    """The perturbed TF of the interrupted run in ``partial_dir`` (``--resume``)."""
    manifest = read_manifest(Path(partial_dir))
    if manifest is None:
        raise InputError(
            f"--resume {partial_dir}: not the .partial directory of an interrupted run"
        )
    return str(manifest["perturbed_tf"])
