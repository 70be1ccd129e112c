"""Compile the ``gram`` kernels into numba's cache beside their source, for a wheel to carry.

The wheel build (``setup.py``) runs ``python -m tfbp_dask.engines.prebuild DIR``
on the package it has laid out in ``DIR``. numba writes what it compiles to the
``__pycache__`` directory next to ``_gram_kernels.py`` (its default place when
``NUMBA_CACHE_DIR`` is unset and the directory is writable), the wheel includes
those files, and an installed copy loads them on its first run instead of
compiling for seconds.

numba validates every entry when it loads it: its own version, the source's
content hash (numba >= 0.68; older releases compare the file's timestamp, which
an installation does not keep), the bytecode, and the CPU name and features. An
entry made for another machine or release is ignored and that kernel compiled
as usual, so the numbers never depend on where the kernels were compiled.
"""

from __future__ import annotations

import sys
from pathlib import Path


def cached_kernels(package_dir: Path) -> dict[str, bool]:
    """Whether each compiled kernel has a cache index beside the source in ``package_dir``.

    Parameters
    ----------
    package_dir : Path
        A ``tfbp_dask`` package directory (installed or laid out by a build).

    Returns
    -------
    dict
        Kernel name to whether ``engines/__pycache__`` holds its numba index.
    """
    from . import _gram_kernels

    cache = package_dir / "engines" / "__pycache__"
    names = [
        name
        for name, kernel in vars(_gram_kernels).items()
        if hasattr(kernel, "py_func") and hasattr(kernel, "signatures")
    ]
    return {name: any(cache.glob(f"_gram_kernels.{name}-*.nbi")) for name in names}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tfbp_dask.engines.prebuild BUILD_DIR", file=sys.stderr)
        return 2
    package_dir = Path(__file__).resolve().parents[1]
    if package_dir.parent != Path(argv[0]).resolve():
        print(f"tfbp_dask was imported from {package_dir}, not from {argv[0]}", file=sys.stderr)
        return 1
    from . import gram

    gram.warm_up()  # compiles every kernel a fit uses, or loads it
    missing = [name for name, cached in cached_kernels(package_dir).items() if not cached]
    if missing:
        print(
            f"numba cached these kernels elsewhere or not at all: {', '.join(missing)} "
            "(is NUMBA_CACHE_DIR set, or the build directory read-only?)",
            file=sys.stderr,
        )
        return 1
    print(f"compiled the gram kernels into {package_dir / 'engines' / '__pycache__'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
