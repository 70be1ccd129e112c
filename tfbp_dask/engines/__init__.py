"""Engines: pure numerics that fit a chunk of bootstraps (no Dask, no pandas).

Every engine module exposes ``fit_bootstraps(X, y, bootstrap, weights,
test_folds, params) -> BootstrapFits``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.metadata import version

from ._types import BootstrapFits, LassoParams

ENGINES = ("sklearn", "gram")
# Engines whose fits run in compiled code without the GIL and without BLAS: threads of
# one process fit them in parallel, with no library thread pool to pin.
GIL_FREE_ENGINES = frozenset({"gram"})

__all__ = [
    "CD_REPLAY_SKLEARN",
    "ENGINES",
    "GIL_FREE_ENGINES",
    "N_ITER_MEANING",
    "BootstrapFits",
    "LassoParams",
    "get_engine",
    "solver_note",
    "solver_of",
    "warm_up",
]

# The scikit-learn release series whose coordinate descent ``gram_cd`` replays.
CD_REPLAY_SKLEARN = "1.9"

# What ``BootstrapFits.n_iter`` counts, by the solver that fitted the path.
N_ITER_MEANING = {
    "sklearn_cd": "coordinate-descent sweeps of the refit at the chosen alpha (n_iter_)",
    "gram_cd": "coordinate-descent sweeps of the refit at the chosen alpha (as n_iter_)",
    "gram_homotopy": "homotopy steps (a term entering or leaving) of the refit path "
    "from alpha_max down to the chosen alpha",
}


def get_engine(name: str) -> Callable[..., BootstrapFits]:
    """Return the ``fit_bootstraps`` function of the engine called ``name``."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    return import_module(f"{__name__}.{name}").fit_bootstraps


def warm_up(name: str) -> None:
    """Import the engine called ``name`` and load (or compile) what its first fit needs."""
    get_engine(name)
    warm = getattr(import_module(f"{__name__}.{name}"), "warm_up", None)
    if warm is not None:
        warm()


def solver_of(engine: str, n_terms: int) -> str:
    """The path solver engine ``engine`` runs on ``n_terms`` terms (a key of ``N_ITER_MEANING``).

    ``sklearn_cd``: scikit-learn's coordinate descent; ``gram_cd``: the
    ``gram`` engine's replay of it; ``gram_homotopy``: its exact lasso path.
    """
    if engine == "sklearn":
        return "sklearn_cd"
    from .solver import solver_name  # not .gram: the client need not load its kernels

    return f"gram_{solver_name(n_terms)}"


def solver_note(solver: str, sklearn_version: str | None = None) -> str | None:
    """Why ``solver`` may not give scikit-learn's numbers to rounding here, or None.

    The ``gram_cd`` replay follows the coordinate descent of scikit-learn
    ``CD_REPLAY_SKLEARN``.x step for step (on the Gram when a fold has more
    rows than terms, on the rows otherwise, as scikit-learn chooses); another
    release may change those steps. ``sklearn_version`` defaults to the
    installed one.
    """
    if solver != "gram_cd":
        return None
    installed = sklearn_version or version("scikit-learn")
    if installed.split(".")[:2] == CD_REPLAY_SKLEARN.split("."):
        return None
    return (
        f"the gram engine replays the coordinate descent of scikit-learn "
        f"{CD_REPLAY_SKLEARN}.x, but scikit-learn {installed} is installed: its numbers "
        f"may differ from --engine sklearn by more than rounding (as the wide-design "
        f"homotopy's do, by scikit-learn's tolerance)"
    )
