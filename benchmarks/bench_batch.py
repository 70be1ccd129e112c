"""Many TFs: one concurrent batch vs. the same TFs one after another, and 1 vs 2 workers.

Generates yeast-scale data (``datagen.make_dataset(6000, 150)``), then on a
local cluster of single-threaded worker processes:

1. runs ``--n_tfs_run`` TFs as one ``run_many`` batch (all TFs' stages
   interleaved on the cluster);
2. runs the same TFs one at a time with ``run`` on the same cluster;
3. repeats the batch on a one-worker cluster, for the scaling from 1 to 2 workers.

Prints the walls and their ratios, and checks that the batch wrote the same
stage-1 coefficients as the sequential runs.

Run from the repository root::

    python benchmarks/bench_batch.py                  # 20 TFs x 200 bootstraps
    python benchmarks/bench_batch.py --n_tfs_run 6 --n_bootstraps 100
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from distributed import Client, LocalCluster

from tfbp_dask import WorkflowConfig, run, run_many
from tfbp_dask.datagen import make_dataset, write_dataset

COEFFICIENTS = Path("all_data_results") / "bootstrap_coefficients.csv"


def _cluster(workers: int) -> tuple[LocalCluster, Client]:
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    return cluster, Client(cluster)


def _warm_up(config: WorkflowConfig, client: Client) -> None:
    """Compile the engine's kernels on every worker before anything is timed."""
    run(replace(config, n_bootstraps=8, output_dir=config.output_dir / "warmup"), client=client)


def time_batch(configs: list[WorkflowConfig], client: Client) -> tuple[float, list]:
    started = time.perf_counter()
    entries = run_many(configs, client=client)
    return time.perf_counter() - started, entries


def time_sequential(configs: list[WorkflowConfig], client: Client) -> tuple[float, list]:
    started = time.perf_counter()
    outcomes = [run(config, client=client) for config in configs]
    return time.perf_counter() - started, outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_tfs_run", type=int, default=20)
    parser.add_argument("--n_bootstraps", type=int, default=200)
    parser.add_argument("--engine", default="gram")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        data = make_dataset(n_genes=6000, n_tfs=150, seed=1)
        response, predictors = write_dataset(data, directory / "data")
        tfs = list(data.response.columns[1 : 1 + args.n_tfs_run])
        base = WorkflowConfig(
            response_file=response,
            predictors_file=predictors,
            perturbed_tf=tfs[0],
            n_bootstraps=args.n_bootstraps,
            random_state=3,
            engine=args.engine,
            output_dir=directory / "out",
        )

        def configs(label: str) -> list[WorkflowConfig]:
            return [replace(base, perturbed_tf=tf, output_dir=directory / label) for tf in tfs]

        print(
            f"{len(tfs)} TFs x {args.n_bootstraps} bootstraps, 6000 genes x 150 TFs, {args.engine}"
        )
        cluster, client = _cluster(2)
        try:
            _warm_up(base, client)
            batch_wall, entries = time_batch(configs("batch"), client)
            sequential_wall, outcomes = time_sequential(configs("sequential"), client)
            identical = all(
                (entry.run_dir / COEFFICIENTS).read_bytes()
                == (outcome.run_dir / COEFFICIENTS).read_bytes()
                for entry, outcome in zip(entries, outcomes)
                if entry.run_dir is not None
            )
        finally:
            client.close()
            cluster.close()
        cluster, client = _cluster(1)
        try:
            _warm_up(base, client)
            one_worker_wall, _ = time_batch(configs("batch_one_worker"), client)
        finally:
            client.close()
            cluster.close()

    failed = [entry.perturbed_tf for entry in entries if entry.status == "failed"]
    print(f"batch on 2 workers:       {batch_wall:7.1f} s ({len(failed)} failed)")
    print(f"sequential on 2 workers:  {sequential_wall:7.1f} s")
    print(f"batch on 1 worker:        {one_worker_wall:7.1f} s")
    print(f"sequential / batch:       {sequential_wall / batch_wall:7.2f}x")
    print(f"1 worker / 2 workers:     {one_worker_wall / batch_wall:7.2f}x")
    print(f"batch coefficients identical to sequential runs: {identical}")


if __name__ == "__main__":
    main()
