"""Diagnostic figures (PNG, headless matplotlib): CIs, chosen alphas, selection frequency, ΔR².

Every function takes plain tables or arrays and a title and returns the PNG
bytes, so a figure can be drawn wherever is convenient (a run draws them on
the Dask workers) and written by the caller. Figures are made with
matplotlib's object API (no pyplot state) and one at a time per process:
threaded workers or a batch may draw from several threads, and matplotlib's
text layout is not thread-safe.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable, Sequence
from typing import ParamSpec

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

MAX_TERMS_SHOWN = 40
_LOCK = threading.Lock()
_P = ParamSpec("_P")


def _one_at_a_time(plot: Callable[_P, bytes]) -> Callable[_P, bytes]:
    @functools.wraps(plot)
    def locked(*args: _P.args, **kwargs: _P.kwargs) -> bytes:
        with _LOCK:
            return plot(*args, **kwargs)

    return locked


def _subplots(width: float, height: float, labels: Sequence[str] = ()) -> tuple[Figure, object]:
    """A figure whose left margin fits the longest y label.

    Fixed margins instead of ``tight_layout``: measuring every text extent cost
    more than drawing the figure (a batch draws seven figures per TF).
    """
    figure = Figure(figsize=(width, height))
    longest = max((len(str(label)) for label in labels), default=4)
    left = min(0.6, (0.25 + 0.068 * longest) / width)
    bottom = min(0.45, 0.55 / height)
    top = 1 - min(0.3, 0.4 / height)
    figure.subplots_adjust(left=left, right=0.97, bottom=bottom, top=top)
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


@_one_at_a_time
def coefficient_forest(importance: pd.DataFrame, title: str) -> bytes:
    """Median and CI of the significant terms plus the top-ranked ones (at most 40)."""
    shown = importance[(importance["significant"]) | (importance["rank"] <= 15)]
    shown = shown.sort_values("rank").head(MAX_TERMS_SHOWN).iloc[::-1]
    figure, axis = _subplots(7, 1.5 + 0.28 * max(1, len(shown)), shown["term"])
    positions = np.arange(len(shown))
    colors = np.where(shown["significant"], "tab:red", "tab:gray")
    axis.hlines(positions, shown["lower"], shown["upper"], colors=colors, linewidth=2)
    axis.scatter(shown["median"], positions, color=colors, zorder=3, s=18)
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.set_yticks(positions, shown["term"], fontsize=8)
    axis.set_xlabel("coefficient (median and CI over bootstraps; red = significant)")
    axis.set_title(title)
    return _png(figure)


@_one_at_a_time
def alpha_distribution(alphas: np.ndarray, title: str) -> bytes:
    """Histogram of the chosen regularisation strength, on a log scale."""
    figure, axis = _subplots(6, 4)
    positive = alphas[alphas > 0]
    if len(positive):
        # log10 on a linear axis: a log-scaled axis spends most of the time on minor ticks.
        axis.hist(np.log10(positive), bins=30, color="tab:blue")
    axis.set_xlabel("log10(chosen alpha)")
    axis.set_ylabel("bootstraps")
    axis.set_title(title)
    return _png(figure)


@_one_at_a_time
def selection_frequency(importance: pd.DataFrame, title: str) -> bytes:
    """Share of bootstraps in which each top-ranked term has a non-zero coefficient."""
    shown = importance.sort_values("rank").head(MAX_TERMS_SHOWN).iloc[::-1]
    figure, axis = _subplots(7, 1.5 + 0.28 * max(1, len(shown)), shown["term"])
    colors = np.where(shown["significant"], "tab:red", "tab:gray")
    axis.barh(np.arange(len(shown)), shown["selection_frequency"], color=colors)
    axis.set_yticks(np.arange(len(shown)), shown["term"], fontsize=8)
    axis.set_xlim(0, 1)
    axis.set_xlabel("selection frequency (red = significant)")
    axis.set_title(title)
    return _png(figure)


@_one_at_a_time
def interactor_deltas(significance: pd.DataFrame, title: str) -> bytes:
    """ΔR² (main effect − interactor) per interactor, or the lasso coefficients of both."""
    figure, axis = _subplots(
        7, 1.5 + 0.35 * max(1, len(significance)), significance.get("interactor", ())
    )
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
    return _png(figure)
