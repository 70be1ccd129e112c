"""Figures: PNG bytes from plain inputs, drawn on a worker, drawn here when the cluster cannot."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pytest
from conftest import PNG_SIGNATURE, dataset_config
from conftest import png_size as _size
from distributed import get_worker

from tfbp_dask import plots, run
from tfbp_dask.execution import Executor
from tfbp_dask.outputs import RunDirectory, Writing


def _importance(n_terms: int) -> pd.DataFrame:
    rng = np.random.default_rng(n_terms)
    median = rng.normal(size=n_terms)
    return pd.DataFrame(
        {
            "term": [f"TF01:TF{i:02d}" for i in range(n_terms)],
            "median": median,
            "lower": median - 1,
            "upper": median + 1,
            "significant": np.arange(n_terms) < 2,
            "selection_frequency": rng.uniform(size=n_terms),
            "rank": np.arange(1, n_terms + 1),
        }
    )


def test_every_figure_is_a_png_sized_to_its_content() -> None:
    few, many = _importance(3), _importance(30)
    for plot in (plots.coefficient_forest, plots.selection_frequency):
        width_few, height_few = _size(plot(few, "t"))
        width_many, height_many = _size(plot(many, "t"))
        assert width_few == width_many == 700  # 7 inches at 100 dpi
        assert height_many > height_few  # one row per term shown
    assert _size(plots.alpha_distribution(np.geomspace(1e-3, 1, 50), "t")) == (600, 400)
    deltas = pd.DataFrame({"interactor": ["TF01:TF02", "TF01:TF03"], "delta_r2": [0.1, -0.2]})
    assert _size(plots.interactor_deltas(deltas, "t"))[0] == 700


def test_delta_r2_figure_draws_the_table_values(monkeypatch) -> None:
    drawn = []
    monkeypatch.setattr(plots, "_png", lambda figure: drawn.append(figure) or b"")
    linear = pd.DataFrame(
        {"interactor": ["TF01:TF02", "TF01:TF03", "TF01:TF04"], "delta_r2": [0.1, -0.2, 0.03]}
    )
    lasso = pd.DataFrame(
        {
            "interactor": ["TF01:TF02", "TF01:TF03"],
            "coef_interactor": [0.5, 0.0],
            "coef_main_effect": [0.0, -0.25],
        }
    )
    plots.interactor_deltas(linear, "t")
    plots.interactor_deltas(lasso, "t")
    (linear_axis,), (lasso_axis,) = (figure.axes for figure in drawn)
    bars = linear_axis.patches
    assert [bar.get_width() for bar in bars] == [0.1, -0.2, 0.03]
    # Red marks the interactors kept (ΔR² <= 0), as the x label says.
    assert [bar.get_facecolor()[0] > 0.8 for bar in bars] == [False, True, False]
    labels = [label.get_text() for label in linear_axis.get_yticklabels()]
    assert labels == linear["interactor"].tolist()
    widths = [bar.get_width() for bar in lasso_axis.patches]
    assert widths == [0.5, 0.0, 0.0, -0.25]  # interactor bars, then main-effect bars


@pytest.fixture
def executor(client_two_workers):
    executor = Executor.connect(client=client_two_workers)
    yield executor
    executor.close()


def _where(label: str) -> bytes:
    """A stand-in figure whose bytes say where it was drawn."""
    try:
        return f"{label}@{get_worker().address}".encode()
    except ValueError:  # not on a worker
        return f"{label}@here".encode()


def _fails_on_workers(label: str) -> bytes:
    try:
        get_worker()
    except ValueError:
        return f"{label}@here".encode()
    raise RuntimeError("no fonts on this worker")


def test_render_draws_on_a_worker(executor, client_two_workers) -> None:
    workers = set(client_two_workers.scheduler_info()["workers"])
    label, _, where = executor.render(_where, "forest").result().decode().partition("@")
    assert label == "forest" and where in workers
    png = executor.render(plots.alpha_distribution, np.geomspace(1e-3, 1, 20), "t").result()
    assert png[:8] == PNG_SIGNATURE


def test_render_falls_back_here_when_the_worker_fails(executor, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="tfbp_dask.offload"):
        assert executor.render(_fails_on_workers, "forest").result() == b"forest@here"
    assert "no fonts on this worker" in caplog.text


def test_render_after_stop_draws_here(executor) -> None:
    handle = executor.render(_where, "late")
    executor.stop()
    assert handle.done()
    assert handle.result() == b"late@here"
    assert not executor._in_flight


class _Deferred:
    """A figure still being drawn until ``ready`` is set, like one on a busy worker."""

    def __init__(self, plot, args, log) -> None:
        self.plot, self.args, self.log, self.ready = plot, args, log, False

    def done(self) -> bool:
        return self.ready

    def result(self) -> bytes:
        self.log.append(self.plot.__name__)
        return self.plot(*self.args)


def test_run_directory_writes_figures_once_drawn_and_all_before_finishing(tmp_path) -> None:
    log, handles = [], []

    def deferred(plot, *args):
        handles.append(_Deferred(plot, args, log))
        return handles[-1]

    run_dir = RunDirectory(tmp_path, "TF01", writing=Writing(render=deferred))
    first, second = run_dir.path / "first.png", run_dir.path / "second.png"
    run_dir._plot(first, plots.alpha_distribution, np.geomspace(1e-3, 1, 20), "t")
    run_dir._plot(second, plots.alpha_distribution, np.geomspace(1e-2, 1, 20), "t")
    run_dir.write_plots(wait=False)
    assert not first.exists() and not second.exists() and log == []
    handles[0].ready = True
    run_dir.write_plots(wait=False)
    assert first.exists() and not second.exists()
    final = run_dir.finish()  # waits for the rest
    assert log == ["alpha_distribution", "alpha_distribution"]
    assert (final / "second.png").read_bytes()[:8] == PNG_SIGNATURE


def test_figures_of_a_stage_are_on_disk_while_the_next_stage_runs(
    tiny_dataset, tmp_path, client_two_workers
) -> None:
    # The all-data figures are submitted before the top-N fits and written
    # without waiting for the run's end: while the top-N stage is held at its
    # first progress report, they appear on disk. (Were they written only when
    # the run finishes, the wait below would run out.)
    output_dir = tmp_path / "results"
    config = dataset_config(
        tiny_dataset, output_dir, n_bootstraps=12, random_state=3, top_n=150, chunk_size=1
    )
    expected = ["alpha_distribution.png", "coefficient_cis.png", "selection_frequency.png"]
    seen: list[list[str]] = []

    def progress(tf: str, stage: str, done: int, total: int) -> None:
        if not stage.startswith("top") or seen:
            return
        (partial,) = output_dir.glob("*.partial")
        plot_dir = partial / "all_data_results" / "diagnostic_plots"
        deadline = time.monotonic() + 60
        names: list[str] = []
        while time.monotonic() < deadline:
            names = sorted(path.name for path in plot_dir.glob("*.png"))
            if names == expected:
                break
            time.sleep(0.05)
        seen.append(names)

    outcome = run(config, client=client_two_workers, progress=progress)
    assert outcome.outcome == "completed"
    assert seen == [expected]


def test_heatmap_of_tfs_without_a_stage4_verdict(monkeypatch) -> None:
    """A TF that stopped before stage 4 has no verdict (NA in the table's string column):
    its cells are drawn, only the pairs stage 4 kept get a marker (pandas 2.1 gives an
    object array for a comparison with NA, which cannot index)."""
    from tfbp_dask.batch_report import Interaction, interactions_table

    stage = (98.0, -0.1, 0.1, 0.5, 1.0)
    rows = [
        Interaction("TF01", "TF02", "TF01:TF02", *stage, *stage, True, "linear", "interactor", 0.1),
        Interaction("TF01", "TF03", "TF01:TF03", *stage, *stage, True, "linear", "dropped", 0.0),
        Interaction("TF04", "TF02", "TF04:TF02", *stage, *stage, None, None, None, float("nan")),
    ]  # fmt: skip
    table = interactions_table(rows)
    assert table["stage4_verdict"].isna().sum() == 1
    marked = []
    from matplotlib.axes import Axes

    scatter = Axes.scatter

    def recording_scatter(self, x, y, *args, **kwargs):
        marked.append(list(zip(np.asarray(x).tolist(), np.asarray(y).tolist())))
        return scatter(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "scatter", recording_scatter)
    png = plots.interaction_heatmap(table, "a TF without stage 4")
    assert png[:8] == PNG_SIGNATURE
    assert marked == [[(0, 0)]]  # TF01 x TF02 only
