"""Per-bootstrap cost and parity of the engines, on one core.

Two problems:

* yeast scale: ``datagen.make_dataset(n_genes=6000, n_tfs=150)``, the first TF
  is the pTF, the design is pTF x (each of the 149 other TFs), classes from
  the pTF binding with bins (0, 8, 12, inf);
* top-N stage: the 600 genes most bound by the pTF and 3 terms (the pTF's
  two planted partners and one other TF).

For each, every engine fits the same bootstraps (same weights, same folds);
the script prints milliseconds per bootstrap, the speed-up over ``sklearn``
and the parity of each engine with ``sklearn`` on the bootstraps both fitted.
``gram`` is the engine as the workflow runs it (its path solver chosen by the
width of the design); ``gram:cd`` and ``gram:homotopy`` force one solver.
Last, it times the whole default workflow (``gram``, yeast scale, 1000
bootstraps) on an embedded cluster of 2 worker processes and prints its stage
walls and peak memory (``bench_workflow.measure_workflow``).

Run from the repository root::

    python benchmarks/bench_engines.py                  # about two minutes
    python benchmarks/bench_engines.py --n_bootstraps_sklearn 5 --n_bootstraps_fast 50
"""

from __future__ import annotations

import os

# One core: BLAS thread pools must be sized before numpy is first imported.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
from bench_workflow import measure_workflow  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from tfbp_dask import datagen, resampling  # noqa: E402
from tfbp_dask.engines import BootstrapFits, LassoParams, get_engine, gram  # noqa: E402

BINS = (0, 8, 12, np.inf)


@dataclass
class Problem:
    """One design with its stratification classes."""

    name: str
    X: np.ndarray
    y: np.ndarray
    classes: np.ndarray


@dataclass
class EngineTiming:
    """Result of timing one engine on one problem."""

    engine: str
    n_bootstraps: int
    ms_per_bootstrap: float
    first_call_s: float
    fits: BootstrapFits


@dataclass
class Parity:
    """Agreement of an engine with ``sklearn`` on the bootstraps both fitted."""

    n_bootstraps: int
    same_alpha: float
    max_grid_distance: int
    p95_coef: float
    max_coef: float


def yeast_scale_problem(seed: int) -> tuple[Problem, datagen.SyntheticData]:
    """6000 genes x 149 pTF x TF interaction terms."""
    data = datagen.make_dataset(n_genes=6000, n_tfs=150, seed=seed)
    binding = data.predictors.iloc[:, 1:].to_numpy()
    ptf = binding[:, 0]
    X = ptf[:, None] * binding[:, 1:]
    y = data.response.iloc[:, 1].to_numpy()
    classes = resampling.stratification_classes(ptf, BINS)
    return Problem("yeast scale", X, y, classes), data


def top_n_problem(data: datagen.SyntheticData, n_rows: int = 600) -> Problem:
    """The ``n_rows`` genes most bound by the pTF, 3 interaction terms."""
    tfs = list(data.predictors.columns[1:])
    ptf_name = tfs[0]
    partners = data.planted[ptf_name]
    other = next(tf for tf in tfs[1:] if tf not in partners)
    binding = data.predictors.set_index("gene_id")
    top = np.argsort(-binding[ptf_name].to_numpy(), kind="stable")[:n_rows]
    ptf = binding[ptf_name].to_numpy()[top]
    X = np.column_stack([ptf * binding[tf].to_numpy()[top] for tf in [*partners, other]])
    y = data.response[ptf_name].to_numpy()[top]
    classes = resampling.stratification_classes(ptf, BINS)
    return Problem(f"top-N stage ({n_rows} x 3)", X, y, classes)


def resamples(
    problem: Problem, n_bootstraps: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bootstrap indices, weights (n_bootstraps, n) and fold labels (n_bootstraps, n)."""
    bootstrap = np.arange(n_bootstraps)
    draws = resampling.bootstrap_draws(len(problem.y), n_bootstraps, seed)
    weights = resampling.draws_to_weights(draws)
    return bootstrap, weights, resampling.bootstrap_test_folds(problem.classes, bootstrap)


def engine(name: str) -> Callable[..., BootstrapFits]:
    """An engine by name; ``gram:<solver>`` forces that path solver of ``gram``."""
    base, _, solver = name.partition(":")
    if base == "gram" and solver:
        return partial(gram.fit_bootstraps, solver=solver)
    return get_engine(base)


def time_engines(
    problem: Problem,
    n_bootstraps: dict[str, int],
    seed: int,
    params: LassoParams,
    repeats: int = 1,
) -> dict[str, EngineTiming]:
    """Per-bootstrap wall time of each engine on one core.

    Every engine fits bootstraps ``0 .. n - 1`` of the same draws (seed
    ``seed``), so the first ``min(n)`` are comparable. A first call on one
    bootstrap (compilation or cache loading, reported as ``first_call_s``) is
    excluded; the time is the best of ``repeats`` runs of the whole chunk.

    Parameters
    ----------
    problem : Problem
    n_bootstraps : dict of str to int
        Engine name to the number of bootstraps it fits.
    seed : int
        Seed of the bootstrap draws.
    params : LassoParams
    repeats : int

    Returns
    -------
    dict of str to EngineTiming
    """
    bootstrap, weights, folds = resamples(problem, max(n_bootstraps.values()), seed)
    timings = {}
    with threadpool_limits(limits=1):
        for name, n in n_bootstraps.items():
            fit = engine(name)
            start = time.perf_counter()
            fit(problem.X, problem.y, bootstrap[:1], weights[:1], folds[:1], params)
            first_call = time.perf_counter() - start
            best = np.inf
            for _ in range(repeats):
                start = time.perf_counter()
                fits = fit(problem.X, problem.y, bootstrap[:n], weights[:n], folds[:n], params)
                best = min(best, time.perf_counter() - start)
            timings[name] = EngineTiming(name, n, 1000 * best / n, first_call, fits)
    return timings


def parity(reference: BootstrapFits, other: BootstrapFits, params: LassoParams) -> Parity:
    """Chosen-alpha and coefficient agreement on the bootstraps both fitted."""
    n = min(len(reference.bootstrap), len(other.bootstrap))
    step = np.log(1 / params.eps) / (params.n_alphas - 1)
    distance = np.rint(np.log(reference.alpha[:n] / other.alpha[:n]) / step).astype(int)
    scale = np.abs(reference.coef[:n]).max()
    worst = np.abs(reference.coef[:n] - other.coef[:n]).max(axis=1) / scale
    return Parity(
        n_bootstraps=n,
        same_alpha=float(np.mean(distance == 0)),
        max_grid_distance=int(np.abs(distance).max()),
        p95_coef=float(np.percentile(worst, 95)),
        max_coef=float(worst.max()),
    )


def explain_mismatches(
    problem: Problem,
    reference: BootstrapFits,
    other: BootstrapFits,
    seed: int,
    params: LassoParams,
) -> tuple[int, int]:
    """Refit the bootstraps whose chosen alphas differ with a tight ``sklearn`` tolerance.

    Returns
    -------
    n_mismatch : int
        Bootstraps (among those both engines fitted) with different alphas.
    n_resolved : int
        How many of them ``sklearn`` at ``tol=1e-12`` fits with ``other``'s alpha.
    """
    n = min(len(reference.bootstrap), len(other.bootstrap))
    mismatch = np.flatnonzero(~np.isclose(reference.alpha[:n], other.alpha[:n], rtol=1e-9))
    if len(mismatch) == 0:
        return 0, 0
    bootstrap, weights, folds = resamples(problem, n, seed)
    tight = LassoParams(max_iter=100_000, tol=1e-12, eps=params.eps, n_alphas=params.n_alphas)
    with threadpool_limits(limits=1):
        refit = get_engine("sklearn")(
            problem.X, problem.y, bootstrap[mismatch], weights[mismatch], folds[mismatch], tight
        )
    return len(mismatch), int(np.isclose(refit.alpha, other.alpha[mismatch], rtol=1e-9).sum())


def report(
    problem: Problem, timings: dict[str, EngineTiming], params: LassoParams, seed: int
) -> None:
    """Print the timing table and the parity with ``sklearn`` of one problem."""
    n_rows, n_terms = problem.X.shape
    print(f"\n## {problem.name}: {n_rows} rows x {n_terms} terms")
    print("| engine | bootstraps | ms / bootstrap | speed-up | first call (s) |")
    print("|---|---:|---:|---:|---:|")
    base = timings["sklearn"].ms_per_bootstrap
    for timing in timings.values():
        print(
            f"| {timing.engine} | {timing.n_bootstraps} | {timing.ms_per_bootstrap:.3f} "
            f"| {base / timing.ms_per_bootstrap:.1f}x | {timing.first_call_s:.2f} |"
        )
    for name, timing in timings.items():
        if name == "sklearn":
            continue
        agreement = parity(timings["sklearn"].fits, timing.fits, params)
        print(
            f"parity {name} vs sklearn over {agreement.n_bootstraps} bootstraps: "
            f"same grid alpha {100 * agreement.same_alpha:.1f} %, "
            f"max grid distance {agreement.max_grid_distance}, "
            f"p95 max|dcoef|/max|coef| {agreement.p95_coef:.2e} "
            f"(max {agreement.max_coef:.2e})"
        )
        n_mismatch, n_resolved = explain_mismatches(
            problem, timings["sklearn"].fits, timing.fits, seed, params
        )
        if n_mismatch:
            print(
                f"  of the {n_mismatch} bootstraps with another alpha, sklearn at tol=1e-12 "
                f"picks {name}'s alpha in {n_resolved}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_bootstraps_sklearn", type=int, default=20)
    parser.add_argument("--n_bootstraps_fast", type=int, default=200)
    parser.add_argument(
        "--engines",
        default="gram,gram:cd,gram:homotopy",
        help="comma list of engines besides sklearn (gram:<solver> forces a path solver)",
    )
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    parser.add_argument("--draw_seed", type=int, default=42, help="bootstrap draw seed")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--top_n_rows", type=int, default=600)
    parser.add_argument(
        "--workflow_bootstraps",
        type=int,
        default=1000,
        help="then time the default workflow (gram) at this many bootstraps on an "
        "embedded cluster of 2 worker processes, with peak memory; 0 skips it",
    )
    args = parser.parse_args(argv)

    params = LassoParams()
    counts = {"sklearn": args.n_bootstraps_sklearn}
    counts.update({name: args.n_bootstraps_fast for name in args.engines.split(",") if name})
    yeast, data = yeast_scale_problem(args.seed)
    print(f"cpu cores visible: {os.cpu_count()}; BLAS and numba on one thread")
    for problem in (yeast, top_n_problem(data, args.top_n_rows)):
        timings = time_engines(problem, counts, args.draw_seed, params, repeats=args.repeats)
        report(problem, timings, params, args.draw_seed)
    if args.workflow_bootstraps > 0:
        print(f"\n## whole default workflow, {args.workflow_bootstraps} bootstraps")
        measure_workflow(["gram"], 6000, 150, args.workflow_bootstraps, workers=2)


if __name__ == "__main__":
    main()
