"""Client memory of a long stage: yeast scale, 5000 bootstraps, peak RSS of the client.

The client holds the bootstrap draws (int32), makes each chunk's weights only
when it submits it, and streams every finished chunk into the checkpoint; this
measures what that leaves as the client's peak resident set (the goal is
under 1.5 GB), next to the size of the data it necessarily holds.

Run from the repository root::

    python benchmarks/bench_memory.py                    # 5000 bootstraps
    python benchmarks/bench_memory.py --n_bootstraps 2000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from pathlib import Path

import psutil
from distributed import Client, LocalCluster

from tfbp_dask import WorkflowConfig, run
from tfbp_dask.datagen import make_dataset, write_dataset


class _RssSampler:
    """Samples the client's RSS every 50 ms (ru_maxrss gives the peak too)."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        started = time.perf_counter()
        while not self._stop.is_set():
            rss = self.process.memory_info().rss / 2**20
            self.samples.append((time.perf_counter() - started, rss))
            time.sleep(0.05)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_bootstraps", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        data = make_dataset(n_genes=6000, n_tfs=150, seed=1)
        response, predictors = write_dataset(data, directory / "data")
        config = WorkflowConfig(
            response_file=response,
            predictors_file=predictors,
            perturbed_tf="TF001",
            n_bootstraps=args.n_bootstraps,
            random_state=1,
            output_dir=directory / "out",
        )
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            baseline = psutil.Process().memory_info().rss / 2**20
            with _RssSampler() as sampler:
                started = time.perf_counter()
                outcome = run(config, client=client)
                wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sampled = max(rss for _, rss in sampler.samples)
    draws_mb = args.n_bootstraps * 5999 * 4 / 2**20
    print(
        f"{args.n_bootstraps} bootstraps, 6000 genes x 150 TFs: {outcome.outcome} in {wall:.1f} s"
    )
    print(f"client RSS before the run {baseline:.0f} MB, sampled peak {sampled:.0f} MB")
    print(f"client peak RSS (ru_maxrss) {peak:.0f} MB; the int32 draws alone are {draws_mb:.0f} MB")


if __name__ == "__main__":
    main()
