"""Figures (PNG, headless matplotlib): CIs, chosen alphas, selection frequency, ΔR², batch heatmap.

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
from importlib import import_module
from typing import TYPE_CHECKING, ParamSpec

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_TERMS_SHOWN = 40
_LOCK = threading.Lock()
_P = ParamSpec("_P")


def warm_up() -> None:
    """Import what drawing needs (matplotlib is imported on first use, not with this module)."""
    import_module("matplotlib.figure")
    import_module("matplotlib.backends.backend_agg")


def _one_at_a_time(plot: Callable[_P, bytes]) -> Callable[_P, bytes]:
    @functools.wraps(plot)
    def locked(*args: _P.args, **kwargs: _P.kwargs) -> bytes:
        with _LOCK:
            return plot(*args, **kwargs)

    return locked


def _figure(width: float, height: float) -> Figure:
    """A new figure; matplotlib is imported here, so a client that never draws never pays."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _subplots(width: float, height: float, labels: Sequence[str] = ()) -> tuple[Figure, object]:
    """A figure whose left margin fits the longest y label.

    Fixed margins instead of ``tight_layout``: measuring every text extent cost
    more than drawing the figure (a batch draws seven figures per TF).
    """
    figure = _figure(width, height)
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


@_one_at_a_time
def interaction_heatmap(interactions: pd.DataFrame, title: str) -> bytes:
    """pTF rows × partner columns of a batch's kept interaction terms.

    Colour: the term's median coefficient in the top-N stage (in the all-data
    stage where the top-N stage did not run), on a diverging scale centred at
    0; a dot where stage 4 kept the interaction term itself; blank where no
    stage kept the pair. ``interactions`` has the columns of
    ``batch_report.Interaction``. Partners that are also pTFs come first, in
    the rows' order, so that both axes read alike in a batch of every TF.
    """
    tfs = list(dict.fromkeys(interactions["perturbed_tf"]))
    order = {name: i for i, name in enumerate(tfs)}
    partners = sorted(
        set(interactions["partner"]),
        key=lambda name: (0, order[name], "") if name in order else (1, 0, name),
    )
    n_rows, n_columns = max(1, len(tfs)), max(1, len(partners))
    cell = min(0.4, max(0.13, 9.0 / max(n_rows, n_columns)))  # inches
    font = min(9.0, max(5.0, 0.72 * 72 * cell))
    char = 0.6 * font / 72  # inches per label character
    left = 0.55 + char * max((len(str(name)) for name in tfs), default=4)
    bottom = 0.6 + char * max((len(str(name)) for name in partners), default=4)
    top, right = 0.9, 1.3  # title and note; colour bar and its label
    grid_width, grid_height = n_columns * cell, n_rows * cell
    width = max(7.5, left + grid_width + right)
    left += (width - left - grid_width - right) / 2  # centred when narrower than the title
    height = bottom + max(grid_height, 1.2) + top
    figure = _figure(width, height)
    figure.suptitle(title, y=1 - 0.12 / height, va="top", fontsize=10)
    if interactions.empty:
        figure.text(0.5, 0.45, "no interaction term was kept by any stage", ha="center")
        return _png(figure)
    figure.text(
        0.5,
        1 - 0.45 / height,
        "colour: median coefficient (top-N stage; all-data where top-N did not run); "
        "● kept after stage 4; blank: no stage kept the pair",
        ha="center",
        va="top",
        fontsize=8,
    )
    axis = figure.add_axes(
        (left / width, bottom / height, grid_width / width, grid_height / height)
    )
    effect = interactions["topn_median"].fillna(interactions["all_data_median"]).to_numpy(float)
    row = interactions["perturbed_tf"].map(order).to_numpy(int)
    place = {name: i for i, name in enumerate(partners)}
    column = interactions["partner"].map(place).to_numpy(int)
    grid = np.full((n_rows, n_columns), np.nan)
    grid[row, column] = effect
    limit = float(np.nanmax(np.abs(effect))) or 1.0
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    cmap = colormaps["coolwarm"].with_extremes(bad="white")
    image = axis.imshow(
        np.ma.masked_invalid(grid),
        cmap=cmap,
        norm=Normalize(-limit, limit),
        aspect="auto",
        interpolation="nearest",
    )
    # No verdict (a TF that stopped before stage 4) is not kept.
    kept = (interactions["stage4_verdict"] == "interactor").fillna(False).to_numpy(dtype=bool)
    axis.scatter(
        column[kept], row[kept], s=(0.35 * 72 * cell) ** 2, color="black", edgecolors="white"
    )
    axis.set_xticks(np.arange(n_columns), partners, rotation=90, fontsize=font)
    axis.set_yticks(np.arange(n_rows), tfs, fontsize=font)
    axis.set_xticks(np.arange(n_columns + 1) - 0.5, minor=True)
    axis.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    axis.grid(which="minor", color="0.9", linewidth=0.5)
    axis.tick_params(which="minor", length=0)
    axis.set_xlim(-0.5, n_columns - 0.5)
    axis.set_ylim(n_rows - 0.5, -0.5)
    axis.set_xlabel("partner", fontsize=9)
    axis.set_ylabel("perturbed TF", fontsize=9)
    bar_axis = figure.add_axes(
        (
            (left + grid_width + 0.2) / width,
            bottom / height,
            0.15 / width,
            max(grid_height, 1.2) / height,
        )
    )
    bar = figure.colorbar(image, cax=bar_axis)
    bar.set_label("median coefficient", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return _png(figure)
