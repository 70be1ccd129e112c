"""The command line as a user meets it: fresh processes, start-up included, side by side.

Every figure is the wall time of a fresh ``python -m tfbp_dask …`` process (embedded
cluster, ``--n_cpus 2``) on yeast-like data (``datagen.make_dataset``, 6000 genes x 150
TFs, written with the published tool's ``target_symbol`` id column and a one-column
response file, which both tools read):

* ``--help``, ``--version`` and an option error (median of five);
* input errors on files of every TF (a missing TF, a text value in the response column, a
  ragged row), each ending in exit 2 (median of five);
* the fixed cost: the whole run at 10 bootstraps, numba cache warm (median of three);
* the whole run at 300 and 1000 bootstraps, cache warm (median of three), next to the
  published ``tfbpmodeling`` command line (``--published``, run once each) on the same files;
  without ``--published``, next to this tool's ``--engine sklearn`` instead;
* the first run after a fresh install, as the README's quick start does it: the checkout's
  HEAD is cloned and ``pip install .`` run in the clone (without dependencies, into a new
  virtual environment that sees this interpreter's packages), then 300 bootstraps run once
  from the clone's root (``python -m`` then imports the clone) and once from elsewhere (the
  installed copy), each the first run of its copy, against the warm run;
* the first run with an empty numba cache (``NUMBA_CACHE_DIR`` pointing at a new directory):
  what an editable install, another CPU or numba < 0.68 meets, since each compiles.

Our per-stage walls come from each run's ``data_summary.json``. Run from the repository
root, alone on the machine (the figures are walls)::

    python benchmarks/bench_cold_start.py --published /path/to/tfbpmodeling-cli
    python benchmarks/bench_cold_start.py --skip_1000          # quicker, no published tool

``--published`` is an executable that behaves as ``python -m tfbpmodeling`` of the
published package (for example a two-line shell script that runs it in its own venv).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tfbp_dask.datagen import make_dataset

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "linear_perturbation_binding_modeling"
SEED = 1


def write_inputs(directory: Path, n_genes: int, n_tfs: int) -> tuple[Path, Path, str]:
    """Files both tools read: ids in ``target_symbol``, the response of the pTF only."""
    data = make_dataset(n_genes=n_genes, n_tfs=n_tfs, seed=1)
    tf = data.response.columns[1]
    directory.mkdir(parents=True, exist_ok=True)
    response, predictors = directory / "response.csv", directory / "predictors.csv"
    ids = {"gene_id": "target_symbol"}
    data.response[["gene_id", tf]].rename(columns=ids).to_csv(response, index=False)
    data.predictors.rename(columns=ids).to_csv(predictors, index=False)
    return response, predictors, tf


def write_bad_inputs(directory: Path, n_genes: int, n_tfs: int) -> dict[str, list[str]]:
    """Options of runs that must end in exit 2 on whole-genome files (every column of both).

    A missing TF on sound files (read by Arrow); a text value in the modeled response column
    (that file is read record by record); a ragged row (the same, stopping at the shape).
    """
    data = make_dataset(n_genes=n_genes, n_tfs=n_tfs, seed=1)
    tf = data.response.columns[1]
    directory.mkdir(parents=True, exist_ok=True)
    response, predictors = directory / "response.csv", directory / "predictors.csv"
    data.response.to_csv(response, index=False)
    data.predictors.to_csv(predictors, index=False)
    text_value = directory / "response_text_value.csv"
    frame = data.response.astype({tf: object})
    frame.loc[n_genes // 2, tf] = "n.d."
    frame.to_csv(text_value, index=False)
    ragged = directory / "response_ragged.csv"
    lines = response.read_text().splitlines(keepends=True)
    lines[n_genes // 2] = lines[n_genes // 2].rstrip("\n") + ",1.0\n"
    ragged.write_text("".join(lines))

    def files(response_file: Path) -> list[str]:
        return ["--response_file", str(response_file), "--predictors_file", str(predictors)]

    return {
        "missing TF": [*files(response), "--perturbed_tf", "NOT_A_TF"],
        "text value in the response": [*files(text_value), "--perturbed_tf", tf],
        "ragged response row": [*files(ragged), "--perturbed_tf", tf],
    }


def timed(
    argv: list[str], env: dict[str, str] | None = None, check: bool = True, cwd: Path | None = None
) -> float:
    """Wall seconds of one fresh process."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - started
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} … exited {done.returncode}:\n{done.stderr}")
    return wall


def median_wall(argv: list[str], repeat: int, check: bool = True) -> float:
    return statistics.median(timed(argv, check=check) for _ in range(repeat))


class Ours:
    """``python -m tfbp_dask`` runs on the benchmark's files."""

    def __init__(self, response: Path, predictors: Path, tf: str, output: Path) -> None:
        self.files = ["--response_file", str(response), "--predictors_file", str(predictors)]
        self.tf = tf
        self.output = output
        self.runs = 0

    def argv(self, n_bootstraps: int, *extra: str, python: str = sys.executable) -> list[str]:
        self.runs += 1
        out = self.output / f"ours_{self.runs}"
        options = ["--perturbed_tf", self.tf, "--n_bootstraps", str(n_bootstraps),
                   "--random_state", str(SEED), "--n_cpus", "2",
                   "--output_dir", str(out)]  # fmt: skip
        tool = [python, "-m", "tfbp_dask", COMMAND]
        return [*tool, *self.files, *options, "--log-level", "WARNING", *extra]

    def run(
        self,
        n_bootstraps: int,
        *extra: str,
        env: dict | None = None,
        python: str = sys.executable,
        cwd: Path | None = None,
    ) -> dict[str, float]:
        """Wall of a whole run plus the stage walls its summary records."""
        argv = self.argv(n_bootstraps, *extra, python=python)
        wall = timed(argv, env=env, cwd=cwd)
        (run_dir,) = Path(argv[argv.index("--output_dir") + 1]).iterdir()
        summary = json.loads((run_dir / "input_data" / "data_summary.json").read_text())
        return {"wall": wall, **summary["wall_seconds"]}


def fresh_install(directory: Path) -> tuple[str, Path]:
    """Clone the checkout's HEAD and ``pip install .`` it into a new venv: (python, clone).

    The venv sees this interpreter's packages (``--system-site-packages``), so only this
    package is installed (``--no-deps``), built as ``pip install .`` builds it.
    """
    clone, venv = directory / "checkout", directory / "venv"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "--disable-pip-version-check", "-q", "install",
                    "--no-deps", "."], check=True, cwd=clone)  # fmt: skip
    for cwd, expected in ((clone, clone), (directory, venv)):
        where = subprocess.run([python, "-c", "import tfbp_dask; print(tfbp_dask.__file__)"],
                               capture_output=True, text=True, check=True, cwd=cwd)  # fmt: skip
        assert where.stdout.startswith(str(expected)), where.stdout
    return python, clone


def published_wall(cli: str, response: Path, predictors: Path, tf: str, n: int, out: Path) -> float:
    files = ["--response_file", str(response), "--predictors_file", str(predictors)]
    options = ["--perturbed_tf", tf, "--n_bootstraps", str(n), "--random_state", str(SEED),
               "--n_cpus", "2", "--output_dir", str(out)]  # fmt: skip
    return timed([cli, COMMAND, *files, *options])


def stages(walls: dict[str, float]) -> str:
    shown = [f"{key} {value:.2f}" for key, value in walls.items() if key not in ("wall", "total")]
    return f"in-run total {walls['total']:.2f} s ({', '.join(shown)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", help="executable of the published tfbpmodeling CLI")
    parser.add_argument("--n_genes", type=int, default=6000)
    parser.add_argument("--n_tfs", type=int, default=150)
    parser.add_argument("--skip_1000", action="store_true", help="no 1000-bootstrap runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        response, predictors, tf = write_inputs(scratch / "data", args.n_genes, args.n_tfs)
        ours = Ours(response, predictors, tf, scratch / "out")
        print(f"data: {args.n_genes} genes x {args.n_tfs} TFs, pTF {tf}; embedded cluster, "
              "--n_cpus 2; every figure a fresh process")  # fmt: skip

        tool = [sys.executable, "-m", "tfbp_dask"]
        print(f"--help                        {median_wall([*tool, '--help'], 5):6.2f} s")
        print(f"{COMMAND} --help  {median_wall([*tool, COMMAND, '--help'], 5):6.2f} s")
        print(f"--version                     {median_wall([*tool, '--version'], 5):6.2f} s")
        bad = ours.argv(0)  # --n_bootstraps 0: exit 2
        print(f"option error (exit 2)         {median_wall(bad, 5, check=False):6.2f} s")

        bad_inputs = write_bad_inputs(scratch / "bad", args.n_genes, args.n_tfs)
        for name, files in bad_inputs.items():
            argv = [*tool, COMMAND, *files, "--n_cpus", "2", "--output_dir", str(scratch / "bad")]
            done = subprocess.run(argv, capture_output=True, text=True)
            assert done.returncode == 2, done.stderr
            print(f"{name + ' (exit 2)':30s}{median_wall(argv, 5, check=False):6.2f} s")
        assert not any((scratch / "bad").glob("*/")), "an exit-2 run left a directory"

        ours.run(10)  # the numba cache is warm from here on
        fixed = [ours.run(10) for _ in range(3)]
        fixed_wall = statistics.median(run["wall"] for run in fixed)
        print(
            f"fixed cost, 10 bootstraps      {fixed_wall:6.2f} s (median of 3; {stages(fixed[0])})"
        )

        sizes = [300] if args.skip_1000 else [300, 1000]
        warm = {}
        for n in sizes:
            runs = sorted((ours.run(n) for _ in range(3)), key=lambda run: run["wall"])
            warm[n] = runs[1]  # the median of three: a wall of ~3 s varies by ~0.1 s
            walls = ", ".join(f"{run['wall']:.2f}" for run in runs)
            print(f"ours, {n:4d} bootstraps, warm   {warm[n]['wall']:6.2f} s (median of "
                  f"{walls}; {stages(warm[n])})")  # fmt: skip
            if args.published:
                other = published_wall(
                    args.published, response, predictors, tf, n, scratch / f"published_{n}"
                )
                label = "published tfbpmodeling"
            else:
                other = ours.run(n, "--engine", "sklearn")
                print(f"ours --engine sklearn, {n:4d}   {other['wall']:6.2f} s ({stages(other)})")
                other = other["wall"]
                label = "--engine sklearn"
            print(f"{label}, {n:4d} bootstraps {other:8.2f} s -> ours is "
                  f"{other / warm[n]['wall']:.1f}x faster")  # fmt: skip

        # numba's default cache place (beside the source) is where the built kernels are.
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
        python, clone = fresh_install(scratch / "install")
        for where, cwd in (("in the checkout", clone), ("elsewhere", scratch / "install")):
            first = ours.run(300, env=env, python=python, cwd=cwd)
            ratio = first["wall"] / warm[300]["wall"]
            print(f"first run after pip install, 300, {where:15s} {first['wall']:6.2f} s "
                  f"({stages(first)}) = {ratio:.2f}x the warm run")  # fmt: skip
        with tempfile.TemporaryDirectory() as cache:
            first = ours.run(300, env={**env, "NUMBA_CACHE_DIR": cache})
        print(f"first run, compiling, 300      {first['wall']:6.2f} s ({stages(first)}) = "
              f"{first['wall'] / warm[300]['wall']:.2f}x the warm run")  # fmt: skip


if __name__ == "__main__":
    main()
