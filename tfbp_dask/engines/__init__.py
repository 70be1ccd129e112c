"""Engines: pure numerics that fit a chunk of bootstraps (no Dask, no pandas).

Every engine module exposes ``fit_bootstraps(X, y, bootstrap, weights,
test_folds, params) -> BootstrapFits``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from ._types import BootstrapFits, LassoParams

ENGINES = ("sklearn", "gram")

__all__ = ["ENGINES", "BootstrapFits", "LassoParams", "get_engine", "warm_up"]


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
