"""Make the fixtures of ``tests/test_compat.py`` by running the published tfbpmodeling tool.

The published tool is not a dependency of this project: install it in a venv of its
own (Python 3.11, ``pip install <its source> "scikit-learn<1.8"``) and pass that
venv's interpreter and the source checkout (its ``__main__`` imports a top-level
module, ``configure_logger``, that the package does not install, so the checkout
goes on ``PYTHONPATH``; nothing of it is changed or copied).

What this script does:

1. makes two small synthetic data sets with ``tfbp_dask.datagen`` (300 genes,
   8 TFs; planted effect 1 and, in ``inputs_weak``, 0.3) and writes them in the
   layout the published tool reads: a ``target_symbol`` id column, a response
   file with the one pTF column, rows sorted by id;
2. runs the published command on it once per case of ``CASES`` (fixed
   ``--random_state``, ``PYTHONHASHSEED`` fixed too);
3. keeps the JSON files the tool wrote (confidence intervals of every term per
   stage, significant terms, stage-4 rows, dropout rounds) under
   ``tests/fixtures/compat/<case>/``, with ``case.json`` holding the command's
   options; the pickles it also writes are not kept.

Usage::

    python benchmarks/make_compat_fixtures.py /work/venv-published/bin/python /tmp/published
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfbp_dask.datagen import make_dataset  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "compat"
PTF = "TF01"
N_GENES, N_TFS, DATA_SEED = 300, 8, 3
# Options shared by every case (the published tool's spelling).
COMMON = {
    "--n_bootstraps": "100",
    "--random_state": "7",
    "--top_n": "150",
    "--max_iter": "10000",
    "--n_cpus": "1",
}
# Input sets: directory name -> make_dataset's planted effect size (noise 1).
INPUT_SETS = {"inputs": 1.0, "inputs_weak": 0.3}
# Case -> (input set, options beyond COMMON).
CASES = {
    "default": ("inputs", []),
    "dropout": ("inputs", ["--iterative_dropout", "--stabilization_ci_start", "80"]),
    "stage4_lasso": ("inputs", ["--stage4_lasso"]),
    "dropout_start50": ("inputs", ["--iterative_dropout"]),
    "seed0_bins": ("inputs", ["--random_state", "0", "--bins", "0,8,32,np.inf"]),
    "weak_dropout": ("inputs_weak", ["--iterative_dropout"]),
    "weak_default": ("inputs_weak", []),
}
KEEP_SUFFIXES = (".json", ".txt")


def write_inputs(directory: Path, effect: float) -> tuple[Path, Path]:
    """The synthetic inputs, sorted by id, in the published tool's column layout."""
    data = make_dataset(n_genes=N_GENES, n_tfs=N_TFS, effect=effect, seed=DATA_SEED)
    response = data.response[["gene_id", PTF]].rename(columns={"gene_id": "target_symbol"})
    predictors = data.predictors.rename(columns={"gene_id": "target_symbol"})
    response = response.sort_values("target_symbol", kind="mergesort")
    predictors = predictors.sort_values("target_symbol", kind="mergesort")
    directory.mkdir(parents=True, exist_ok=True)
    response_path, predictors_path = directory / "response.csv", directory / "predictors.csv"
    response.to_csv(response_path, index=False)
    predictors.to_csv(predictors_path, index=False)
    return response_path, predictors_path


def run_case(
    python: str, source: Path, name: str, extra: list[str], inputs: tuple[Path, Path]
) -> None:
    """Run the published command for one case and keep its JSON/text outputs."""
    response_path, predictors_path = inputs
    options = [item for pair in COMMON.items() for item in pair] + extra
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out"
        command = [
            python,
            "-m",
            "tfbpmodeling",
            "linear_perturbation_binding_modeling",
            "--response_file",
            str(response_path),
            "--predictors_file",
            str(predictors_path),
            "--perturbed_tf",
            PTF,
            "--output_dir",
            str(out),
            *options,
        ]
        env = {**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0"}
        env.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=scratch)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-4000:])
            raise SystemExit(f"{name}: the published tool failed ({done.returncode})")
        run_dir = out / PTF
        target = FIXTURES / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        kept = []
        for path in sorted(run_dir.rglob("*")):
            if path.is_file() and path.suffix in KEEP_SUFFIXES:
                relative = path.relative_to(run_dir)
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target / relative)
                kept.append(str(relative))
        record = {
            "inputs": response_path.parent.name,
            "perturbed_tf": PTF,
            "options": options,
            "pythonhashseed": "0",
            "published_files_kept": kept,
            "published_wall_seconds": round(seconds, 1),
        }
        (target / "case.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name}: {len(kept)} files in {seconds:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("published_python", help="interpreter of the venv holding tfbpmodeling")
    parser.add_argument("published_source", type=Path, help="the published source checkout")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    args = parser.parse_args(argv)
    inputs = {name: write_inputs(FIXTURES / name, effect) for name, effect in INPUT_SETS.items()}
    for name in args.cases:
        input_set, extra = CASES[name]
        run_case(args.published_python, args.published_source, name, extra, inputs[input_set])


if __name__ == "__main__":
    main()
