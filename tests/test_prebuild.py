"""A built package carries the ``gram`` kernels compiled, and a fresh process loads them.

``setup.py``'s ``build_py`` step runs ``tfbp_dask.engines.prebuild`` on the
package it lays out (and copies numba's files beside the checkout's source);
here that step builds into a temporary directory, and a
fresh interpreter importing the package from there fits both solvers: numba
must load every kernel from the built directory (no compilation, no cache file
added), and the numbers must be the bytes of the same fits by the package the
suite runs on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from kernel_fits import FIT_SCRIPT

from tfbp_dask.engines.prebuild import cached_kernels

ROOT = Path(__file__).resolve().parents[1]

# After the fits, the script reports where tfbp_dask came from and numba's cache counts.
_REPORT = """
import json
import tfbp_dask
from tfbp_dask.engines import _gram_kernels

kernels = [k for k in vars(_gram_kernels).values() if hasattr(k, "py_func") and hasattr(k, "stats")]
print(json.dumps({
    "package": tfbp_dask.__file__,
    "hits": sum(sum(k.stats.cache_hits.values()) for k in kernels),
    "misses": sum(sum(k.stats.cache_misses.values()) for k in kernels),
}))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    return {**env, **extra}


def test_a_built_package_loads_its_kernels_without_compiling(tmp_path) -> None:
    lib = tmp_path / "lib"
    building = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert building.returncode == 0, building.stderr
    assert "not compiled into the wheel" not in building.stderr, building.stderr
    package = lib / "tfbp_dask"
    cached = cached_kernels(package)
    assert len(cached) >= 10 and all(cached.values()), cached
    pycache = package / "engines" / "__pycache__"
    before = sorted(p.name for p in pycache.glob("*.nb[ic]"))
    # The checkout being built gets the same files: `python -m tfbp_dask` run from its root
    # imports the checkout's package, not the installed one.
    checkout = ROOT / "tfbp_dask" / "engines" / "__pycache__"
    for name in before:
        assert (checkout / name).read_bytes() == (pycache / name).read_bytes(), name

    script = tmp_path / "fit.py"
    script.write_text(FIT_SCRIPT + _REPORT)
    reports = {}
    for name, extra in (("built", {"PYTHONPATH": str(lib)}), ("here", {})):
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / f"{name}.npz")],
            cwd=tmp_path,
            env=_env(**extra),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        reports[name] = json.loads(done.stdout.strip().splitlines()[-1])
    built = reports["built"]
    assert Path(built["package"]).resolve() == (package / "__init__.py").resolve()
    assert Path(reports["here"]["package"]).resolve() != Path(built["package"]).resolve()
    assert built["misses"] == 0 and built["hits"] >= 3, built
    assert sorted(p.name for p in pycache.glob("*.nb[ic]")) == before  # nothing compiled, saved

    loaded, here = np.load(tmp_path / "built.npz"), np.load(tmp_path / "here.npz")
    assert sorted(loaded.files) == sorted(here.files) and len(here.files) == 12
    for name in here.files:
        assert loaded[name].tobytes() == here[name].tobytes(), name
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
