"""Synthetic binding/perturbation data with planted interactions.

Used for the bundled example, the tests and the benchmarks. Every TF is a
column of both tables; the response of TF ``t`` is driven by the products of
``t``'s binding with the binding of a few partner TFs (the planted ``t:X``
terms), plus noise. The first genes carry the TFs' own names so that the rule
"the pTF's own row is always blacklisted" has something to act on.

Run ``python -m tfbp_dask.datagen OUT_DIR --n_genes 1000 --n_tfs 25`` to write
``response.csv``, ``predictors.csv`` and ``planted.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SyntheticData:
    """A generated data set.

    Attributes
    ----------
    response : DataFrame
        ``gene_id`` column, then one response column per TF.
    predictors : DataFrame
        ``gene_id`` column, then one binding column per TF.
    planted : dict of str to list of str
        For every TF, the partner TFs whose interaction terms drive its response.
    """

    response: pd.DataFrame
    predictors: pd.DataFrame
    planted: dict[str, list[str]]


def tf_names(n_tfs: int) -> list[str]:
    """Names of the generated TFs: ``TF01``, ``TF02``, …"""
    width = max(2, len(str(n_tfs)))
    return [f"TF{i:0{width}d}" for i in range(1, n_tfs + 1)]


def make_dataset(
    n_genes: int = 1000,
    n_tfs: int = 25,
    n_partners: int = 2,
    effect: float = 1.0,
    noise: float = 1.0,
    seed: int = 0,
) -> SyntheticData:
    """Generate binding for ``n_tfs`` TFs over ``n_genes`` genes and planted responses.

    Binding is sparse and heavy-tailed (most genes weakly bound, a few strongly),
    as in calling-cards or ChIP enrichment data.
    """
    if n_tfs < n_partners + 1:
        raise ValueError("n_tfs must exceed n_partners")
    rng = np.random.default_rng(seed)
    tfs = tf_names(n_tfs)
    genes = tfs[: min(n_tfs, n_genes)] + [f"Y{i:05d}W" for i in range(max(0, n_genes - n_tfs))]
    binding = rng.gamma(shape=0.6, scale=1.5, size=(n_genes, n_tfs))
    planted: dict[str, list[str]] = {}
    response = np.empty((n_genes, n_tfs))
    for j, tf in enumerate(tfs):
        others = [k for k in range(n_tfs) if k != j]
        partners = sorted(rng.choice(others, size=n_partners, replace=False).tolist())
        planted[tf] = [tfs[k] for k in partners]
        signal = np.zeros(n_genes)
        for rank, k in enumerate(partners):
            term = binding[:, j] * binding[:, k]
            sign = 1.0 if rank % 2 == 0 else -1.0
            signal += sign * effect * term / term.std()
        response[:, j] = signal + noise * rng.standard_normal(n_genes)
    response_df = pd.DataFrame(response, columns=tfs)
    response_df.insert(0, "gene_id", genes)
    predictors_df = pd.DataFrame(binding.round(6), columns=tfs)
    predictors_df.insert(0, "gene_id", genes)
    return SyntheticData(response_df.round(6), predictors_df, planted)


def write_dataset(data: SyntheticData, directory: Path) -> tuple[Path, Path]:
    """Write ``response.csv``, ``predictors.csv`` and ``planted.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    response_path = directory / "response.csv"
    predictors_path = directory / "predictors.csv"
    data.response.to_csv(response_path, index=False)
    data.predictors.to_csv(predictors_path, index=False)
    (directory / "planted.json").write_text(json.dumps(data.planted, indent=1) + "\n")
    return response_path, predictors_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n_genes", type=int, default=1000)
    parser.add_argument("--n_tfs", type=int, default=25)
    parser.add_argument("--n_partners", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = make_dataset(args.n_genes, args.n_tfs, args.n_partners, seed=args.seed)
    write_dataset(data, args.out_dir)


if __name__ == "__main__":
    main()
