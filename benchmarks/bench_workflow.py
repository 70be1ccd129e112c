"""Whole-workflow wall time and peak memory at yeast scale, per engine.

Generates ``datagen.make_dataset(n_genes=6000, n_tfs=150)`` into a temporary
directory, starts a local cluster of single-threaded worker *processes* (what
the command's embedded cluster is), and runs the documented workflow for the
first TF with each engine asked for. Every engine first runs once on a few
bootstraps so that one-off costs (numba compilation, imports on the workers)
are reported apart from the measured run.

Prints per engine: wall seconds per stage and in total, bootstraps per second,
peak RSS of the client and of each worker, and the ratio of the engines' walls.

Run from the repository root::

    python benchmarks/bench_workflow.py                       # gram, 1000 bootstraps
    python benchmarks/bench_workflow.py --engines gram sklearn --n_bootstraps 100
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from distributed import Client, LocalCluster

from tfbp_dask import WorkflowConfig, run
from tfbp_dask.datagen import make_dataset, write_dataset


def _peak_rss_mb() -> float:
    """Peak resident set size of the calling process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_workflow(config: WorkflowConfig, client: Client) -> dict[str, float]:
    """Run one TF's workflow on ``client``; return its stage walls and total."""
    started = time.perf_counter()
    outcome = run(config, client=client)
    total = time.perf_counter() - started
    walls = {stage: seconds for stage, seconds in outcome.result.stage_seconds.items()}
    walls["total"] = total
    walls["outcome"] = outcome.outcome
    return walls


def measure_workflow(
    engines: list[str], n_genes: int, n_tfs: int, n_bootstraps: int, workers: int
) -> dict[str, dict[str, float]]:
    """Time the workflow of one TF per engine on a local cluster; print and return the walls."""
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        data = make_dataset(n_genes=n_genes, n_tfs=n_tfs, seed=1)
        response, predictors = write_dataset(data, directory / "data")
        tf = data.response.columns[1]
        base = WorkflowConfig(
            response_file=response,
            predictors_file=predictors,
            perturbed_tf=tf,
            n_bootstraps=n_bootstraps,
            random_state=1,
            output_dir=directory / "out",
        )
        print(
            f"data: {n_genes} genes x {n_tfs} TFs, pTF {tf}, "
            f"{n_bootstraps} bootstraps, {workers} worker processes x 1 thread"
        )
        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            walls = {}
            for engine in engines:
                warm = replace(base, engine=engine, n_bootstraps=8)
                started = time.perf_counter()
                run(warm, client=client)
                warmup = time.perf_counter() - started
                walls[engine] = time_workflow(replace(base, engine=engine), client)
                stages = ", ".join(
                    f"{name} {seconds:.2f} s"
                    for name, seconds in walls[engine].items()
                    if name not in ("total", "outcome")
                )
                total = walls[engine]["total"]
                print(
                    f"{engine:>8}: total {total:.2f} s ({stages}); "
                    f"{n_bootstraps / walls[engine]['all_data']:.0f} stage-1 bootstraps/s; "
                    f"warm-up run {warmup:.1f} s; {walls[engine]['outcome']}"
                )
            workers_rss = client.run(_peak_rss_mb)
        print(f"peak RSS: client {_peak_rss_mb():.0f} MB; workers " + ", ".join(
            f"{peak:.0f} MB" for peak in workers_rss.values()
        ))  # fmt: skip
        if "sklearn" in walls and "gram" in walls:
            ratio = walls["sklearn"]["total"] / walls["gram"]["total"]
            print(f"whole workflow, sklearn / gram wall: {ratio:.1f}x")
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_genes", type=int, default=6000)
    parser.add_argument("--n_tfs", type=int, default=150)
    parser.add_argument("--n_bootstraps", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engines", nargs="+", default=["gram"])
    args = parser.parse_args()
    measure_workflow(args.engines, args.n_genes, args.n_tfs, args.n_bootstraps, args.workers)


if __name__ == "__main__":
    main()
