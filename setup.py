"""Build hook: a wheel carries the ``gram`` engine's kernels compiled for the machine that built it.

Everything else about the package is declared in ``pyproject.toml``. Once
``build_py`` has laid out the package, it runs ``tfbp_dask.engines.prebuild``
on that copy in a child interpreter, which leaves numba's cache of the kernels
in ``tfbp_dask/engines/__pycache__`` for the wheel to include (see that
module). The same files are also put beside the kernels' source in the
checkout being built: ``python -m tfbp_dask`` run from the checkout's root (as
in the README) imports the checkout, not the installed copy, and finds them
there. The step is best effort: if the kernels cannot be compiled here, the
wheel is built without them and the first run compiles them, as before.
Editable installs skip it (they compile on first use, in the source tree);
so does a build with ``TFBP_DASK_NO_KERNEL_CACHE`` set.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class build_py_with_kernels(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or os.environ.get("TFBP_DASK_NO_KERNEL_CACHE"):
            return
        build_lib = Path(self.build_lib).resolve()
        for stale in (build_lib / "tfbp_dask" / "engines" / "__pycache__").glob("*.nb[ic]"):
            stale.unlink()  # left by an earlier build in the same directory
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(build_lib), env.get("PYTHONPATH")]))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "tfbp_dask.engines.prebuild", str(build_lib)],
                env=env,
                cwd=build_lib,
                capture_output=True,
                text=True,
                timeout=600,
            )
        except (OSError, subprocess.SubprocessError) as error:
            self.warn(f"the gram kernels were not compiled into the wheel: {error}")
            return
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            self.warn(f"the gram kernels were not compiled into the wheel: {last}")
            return
        source = Path(__file__).resolve().parent / "tfbp_dask" / "engines"
        built = build_lib / "tfbp_dask" / "engines"
        try:
            if source != built and filecmp.cmp(
                source / "_gram_kernels.py", built / "_gram_kernels.py", shallow=False
            ):
                _copy_cache(built / "__pycache__", source / "__pycache__")
        except OSError as error:
            self.warn(f"the gram kernels were not copied beside their source: {error}")


def _copy_cache(source: Path, target: Path) -> None:
    """Copy numba's cache files, data before indexes, each replacing its target at once
    (a process loading the kernels meanwhile never reads half a file)."""
    target.mkdir(exist_ok=True)
    for pattern in ("*.nbc", "*.nbi"):
        for path in sorted(source.glob(pattern)):
            with tempfile.NamedTemporaryFile(dir=target, delete=False) as copy:
                copy.write(path.read_bytes())
            try:
                os.replace(copy.name, target / path.name)
            except OSError:
                os.unlink(copy.name)
                raise


setup(cmdclass={"build_py": build_py_with_kernels})
