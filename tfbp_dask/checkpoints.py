"""Checkpoints of an unfinished run: each fitted chunk of bootstraps as one Parquet file.

A run keeps them in ``{run}.partial/checkpoints/{stage label}/``; ``--resume`` reads them
back (``read_checkpoints``) and fits only the bootstraps that are missing. The chunk's
columns (``FIT_COLUMNS`` and one ``coef_{j}`` per term) are all a resume needs: the same
numbers as the fits that made them, bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .engines import BootstrapFits
from .tables import atomic

CHECKPOINT_DIR = "checkpoints"
FIT_COLUMNS = ("bootstrap", "intercept", "alpha", "cv_mse", "n_iter", "r2", "max_iter_reached")


def unreadable_checkpoints(partial_path: Path) -> list[str]:
    """Checkpoint files of an interrupted run that lack a column this version writes.

    Checkpoints of an older tfbp_dask (before ``max_iter_reached``) cannot be continued.
    """
    directory = Path(partial_path) / CHECKPOINT_DIR
    old = []
    for path in sorted(directory.glob("*/b*.parquet")) if directory.is_dir() else []:
        if not set(FIT_COLUMNS) <= set(pq.read_schema(path).names):
            old.append(f"{path.parent.name}/{path.name}")
    return old


def write_checkpoint(directory: Path, fits: BootstrapFits) -> None:
    """One chunk of fitted bootstraps as Parquet in ``directory`` (written atomically)."""
    directory.mkdir(parents=True, exist_ok=True)
    columns = {name: getattr(fits, name) for name in FIT_COLUMNS}
    columns.update({f"coef_{j}": fits.coef[:, j] for j in range(fits.coef.shape[1])})
    target = directory / f"b{fits.bootstrap[0]:06d}-{fits.bootstrap[-1]:06d}.parquet"
    with atomic(target) as temporary:
        pq.write_table(pa.table(columns), temporary)


def read_checkpoints(directory: Path) -> BootstrapFits | None:
    """Every bootstrap checkpointed in ``directory`` (one chunk a file), or None."""
    files = sorted(directory.glob("b*.parquet")) if directory.is_dir() else []
    if not files:
        return None
    parts = []
    for path in files:
        table = pd.read_parquet(path)
        coef_columns = [c for c in table.columns if c.startswith("coef_")]
        parts.append(
            BootstrapFits(
                coef=table[coef_columns].to_numpy(dtype=float).reshape(len(table), -1),
                **{name: table[name].to_numpy() for name in FIT_COLUMNS},
            )
        )
    return BootstrapFits.concatenate(parts)
