"""Diagnostic figures (PNG, headless matplotlib): CIs, chosen alphas, selection frequency, ΔR²."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MAX_TERMS_SHOWN = 40


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def coefficient_forest(importance: pd.DataFrame, title: str, path: Path) -> None:
    """Median and CI of the significant terms plus the top-ranked ones (at most 40)."""
    shown = importance[(importance["significant"]) | (importance["rank"] <= 15)]
    shown = shown.sort_values("rank").head(MAX_TERMS_SHOWN).iloc[::-1]
    figure, axis = plt.subplots(figsize=(7, 1.5 + 0.28 * max(1, len(shown))))
    positions = np.arange(len(shown))
    colors = np.where(shown["significant"], "tab:red", "tab:gray")
    axis.hlines(positions, shown["lower"], shown["upper"], colors=colors, linewidth=2)
    axis.scatter(shown["median"], positions, color=colors, zorder=3, s=18)
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.set_yticks(positions, shown["term"], fontsize=8)
    axis.set_xlabel("coefficient (median and CI over bootstraps; red = significant)")
    axis.set_title(title)
    _save(figure, path)


def alpha_distribution(alphas: np.ndarray, title: str, path: Path) -> None:
    """Histogram of the chosen regularisation strength, on a log scale."""
    figure, axis = plt.subplots(figsize=(6, 4))
    positive = alphas[alphas > 0]
    if len(positive):
        bins = np.geomspace(positive.min(), positive.max() * 1.0001, 30)
        axis.hist(positive, bins=bins, color="tab:blue")
        axis.set_xscale("log")
    axis.set_xlabel("chosen alpha")
    axis.set_ylabel("bootstraps")
    axis.set_title(title)
    _save(figure, path)


def selection_frequency(importance: pd.DataFrame, title: str, path: Path) -> None:
    """Share of bootstraps in which each top-ranked term has a non-zero coefficient."""
    shown = importance.sort_values("rank").head(MAX_TERMS_SHOWN).iloc[::-1]
    figure, axis = plt.subplots(figsize=(7, 1.5 + 0.28 * max(1, len(shown))))
    colors = np.where(shown["significant"], "tab:red", "tab:gray")
    axis.barh(np.arange(len(shown)), shown["selection_frequency"], color=colors)
    axis.set_yticks(np.arange(len(shown)), shown["term"], fontsize=8)
    axis.set_xlim(0, 1)
    axis.set_xlabel("selection frequency (red = significant)")
    axis.set_title(title)
    _save(figure, path)


def interactor_deltas(significance: pd.DataFrame, title: str, path: Path) -> None:
    """ΔR² (main effect − interactor) per interactor, or the lasso coefficients of both."""
    figure, axis = plt.subplots(figsize=(7, 1.5 + 0.35 * max(1, len(significance))))
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
