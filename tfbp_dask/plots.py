"""Diagnostic figures (PNG, headless matplotlib): CIs, chosen alphas, selection frequency, ΔR².

Figures are made with matplotlib's object API (no pyplot state) and one at a
time: a batch writes plots from several threads, and matplotlib's text layout
is not thread-safe.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

MAX_TERMS_SHOWN = 40
_LOCK = threading.Lock()
_P = ParamSpec("_P")


def _one_at_a_time(plot: Callable[_P, None]) -> Callable[_P, None]:
    @functools.wraps(plot)
    def locked(*args: _P.args, **kwargs: _P.kwargs) -> None:
        with _LOCK:
            plot(*args, **kwargs)

    return locked


def _subplots(width: float, height: float) -> tuple[Figure, object]:
    figure = Figure(figsize=(width, height))
    return figure, figure.add_subplot()


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)


@_one_at_a_time
def coefficient_forest(importance: pd.DataFrame, title: str, path: Path) -> None:
    """Median and CI of the significant terms plus the top-ranked ones (at most 40)."""
    shown = importance[(importance["significant"]) | (importance["rank"] <= 15)]
    shown = shown.sort_values("rank").head(MAX_TERMS_SHOWN).iloc[::-1]
    figure, axis = _subplots(7, 1.5 + 0.28 * max(1, len(shown)))
    positions = np.arange(len(shown))
    colors = np.where(shown["significant"], "tab:red", "tab:gray")
    axis.hlines(positions, shown["lower"], shown["upper"], colors=colors, linewidth=2)
    axis.scatter(shown["median"], positions, color=colors, zorder=3, s=18)
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.set_yticks(positions, shown["term"], fontsize=8)
    axis.set_xlabel("coefficient (median and CI over bootstraps; red = significant)")
    axis.set_title(title)
    _save(figure, path)


@_one_at_a_time
def alpha_distribution(alphas: np.ndarray, title: str, path: Path) -> None:
    """Histogram of the chosen regularisation strength, on a log scale."""
    figure, axis = _subplots(6, 4)
    positive = alphas[alphas > 0]
    if len(positive):
        bins = np.geomspace(positive.min(), positive.max() * 1.0001, 30)
        axis.hist(positive, bins=bins, color="tab:blue")
        axis.set_xscale("log")
    axis.set_xlabel("chosen alpha")
    axis.set_ylabel("bootstraps")
    axis.set_title(title)
    _save(figure, path)


@_one_at_a_time
def selection_frequency(importance: pd.DataFrame, title: str, path: Path) -> None:
    """Share of bootstraps in which each top-ranked term has a non-zero coefficient."""
    shown = importance.sort_values("rank").head(MAX_TERMS_SHOWN).iloc[::-1]
    figure, axis = _subplots(7, 1.5 + 0.28 * max(1, len(shown)))
    colors = np.where(shown["significant"], "tab:red", "tab:gray")
    axis.barh(np.arange(len(shown)), shown["selection_frequency"], color=colors)
    axis.set_yticks(np.arange(len(shown)), shown["term"], fontsize=8)
    axis.set_xlim(0, 1)
    axis.set_xlabel("selection frequency (red = significant)")
    axis.set_title(title)
    _save(figure, path)


@_one_at_a_time
def interactor_deltas(significance: pd.DataFrame, title: str, path: Path) -> None:
    """ΔR² (main effect − interactor) per interactor, or the lasso coefficients of both."""
    figure, axis = _subplots(7, 1.5 + 0.35 * max(1, len(significance)))
    positions = np.arange(len(significance))
    labels = significance["interactor"] if len(significance) else []
    if "delta_r2" in significance:
        deltas = significance["delta_r2"].to_numpy()
        axis.barh(positions, deltas, color=np.where(deltas > 0, "tab:gray", "tab:red"))
        axis.set_xlabel("ΔR² = main effect − interactor (red: interactor kept)")
    else:
        axis.barh(positions - 0.2, significance["coef_interactor"], height=0.4, label="interactor")
        axis.barh(
            positions + 0.2, significance["coef_main_effect"], height=0.4, label="main effect"
        )
        axis.set_xlabel("lasso coefficient")
        axis.legend()
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.set_yticks(positions, labels, fontsize=8)
    axis.set_title(title)
    _save(figure, path)
