"""A built package carries the ``gram`` kernels compiled, and a fresh process loads them.

``setup.py``'s ``build_py`` step runs ``tfbp_dask.engines.prebuild`` on the
package it lays out; here that step builds into a temporary directory, and a
fresh interpreter importing the package from there fits both solvers: numba
must load every kernel from the built directory (no compilation, no cache file
added), and the numbers must be the bytes this process computes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tfbp_dask import datagen, resampling
from tfbp_dask.engines import LassoParams, gram
from tfbp_dask.engines.prebuild import cached_kernels

ROOT = Path(__file__).resolve().parents[1]

_PROBLEMS = [(600, 13, "cd"), (700, 71, "homotopy")]

_LOAD_AND_FIT = """
import json, sys
import numpy as np
import tfbp_dask
from tfbp_dask.engines import _gram_kernels
sys.path.insert(0, sys.argv[2])
from test_prebuild import fit_all

np.savez(sys.argv[1], **fit_all())
kernels = [k for k in vars(_gram_kernels).values() if hasattr(k, "py_func") and hasattr(k, "stats")]
print(json.dumps({
    "package": tfbp_dask.__file__,
    "hits": sum(sum(k.stats.cache_hits.values()) for k in kernels),
    "misses": sum(sum(k.stats.cache_misses.values()) for k in kernels),
}))
"""


def fit_all() -> dict[str, np.ndarray]:
    """Fits of both solvers on small yeast-like problems, every result array by name."""
    arrays = {}
    for n_genes, n_tfs, solver in _PROBLEMS:
        data = datagen.make_dataset(n_genes=n_genes, n_tfs=n_tfs, n_partners=6, effect=0.3, seed=5)
        binding = data.predictors.iloc[:, 1:].to_numpy()
        X = binding[:, :1] * binding[:, 1:]
        y = data.response.iloc[:, 1].to_numpy()
        classes = resampling.stratification_classes(binding[:, 0], (0, 8, 12, np.inf))
        bootstrap = np.arange(4)
        weights = resampling.draws_to_weights(resampling.bootstrap_draws(n_genes, 4, 6))
        folds = resampling.bootstrap_test_folds(classes, bootstrap)
        fits = gram.fit_bootstraps(X, y, bootstrap, weights, folds, LassoParams(), solver=solver)
        for name in ("coef", "intercept", "alpha", "cv_mse", "r2", "n_iter"):
            arrays[f"{solver}_{name}"] = getattr(fits, name)
    return arrays


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    return {**env, **extra}


def test_a_built_package_loads_its_kernels_without_compiling(tmp_path) -> None:
    lib = tmp_path / "lib"
    built = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    assert "not compiled into the wheel" not in built.stderr, built.stderr
    package = lib / "tfbp_dask"
    cached = cached_kernels(package)
    assert len(cached) >= 10 and all(cached.values()), cached
    pycache = package / "engines" / "__pycache__"
    before = sorted(p.name for p in pycache.glob("*.nb[ic]"))

    here = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_FIT, str(tmp_path / "fits.npz"), here],
        cwd=tmp_path,
        env=_env(PYTHONPATH=str(lib)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(report["package"]).resolve() == (package / "__init__.py").resolve()
    assert report["misses"] == 0 and report["hits"] >= 3, report
    assert sorted(p.name for p in pycache.glob("*.nb[ic]")) == before  # nothing compiled, saved

    loaded, here = np.load(tmp_path / "fits.npz"), fit_all()
    assert sorted(loaded.files) == sorted(here)
    for name, values in here.items():
        assert loaded[name].tobytes() == values.tobytes(), name
    assert np.count_nonzero(here["homotopy_coef"]) > 10 and np.count_nonzero(here["cd_coef"]) > 10


def test_prebuild_refuses_a_package_imported_from_elsewhere(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tfbp_dask.engines.prebuild", str(tmp_path)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert f"not from {tmp_path}" in done.stderr
