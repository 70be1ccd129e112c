"""The stages end to end through the public API, on threaded test clusters."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import dataset_config
from scipy.stats import rankdata
from sklearn.linear_model import LassoCV
from sklearn.model_selection import StratifiedKFold

from tfbp_dask import WorkflowConfig, run
from tfbp_dask.engines import solver as solver_choice
from tfbp_dask.execution import ClusterDraws
from tfbp_dask.resampling import SeededDraws


def _config(dataset, output_dir: Path, **options) -> WorkflowConfig:
    return dataset_config(
        dataset, output_dir, **{**dict(n_bootstraps=24, random_state=3), **options}
    )


def _coefficients(run_dir, stage="all_data_results"):
    return pd.read_parquet(run_dir / stage / "bootstrap_coefficients.parquet")


def test_same_numbers_for_one_or_two_workers_and_any_chunking(
    tiny_dataset, output_dir, client_one_worker, client_two_workers
):
    config = _config(tiny_dataset, output_dir)
    one = run(replace(config, chunk_size=24), client=client_one_worker)
    two = run(replace(config, chunk_size=5), client=client_two_workers)
    three = run(replace(config, chunk_size=7), client=client_two_workers)
    assert one.run_dir != two.run_dir
    for stage in ("all_data_results", "topn_results"):
        reference = _coefficients(one.run_dir, stage)
        pd.testing.assert_frame_equal(reference, _coefficients(two.run_dir, stage))
        pd.testing.assert_frame_equal(reference, _coefficients(three.run_dir, stage))
        for name in ("confidence_intervals.csv", "model_statistics.csv"):
            first = (one.run_dir / stage / name).read_bytes()
            assert first == (two.run_dir / stage / name).read_bytes()
            assert first == (three.run_dir / stage / name).read_bytes()
    assert client_one_worker.status == "running"  # a caller's client is never closed


def test_planted_interactions_are_found(small_dataset, output_dir, client_two_workers):
    data, response, predictors = small_dataset
    config = _config(small_dataset, output_dir, n_bootstraps=30, top_n=600)
    outcome = run(config, client=client_two_workers)
    planted = {f"TF01:{partner}" for partner in data.planted["TF01"]}
    significant = {t.name for t in outcome.result.all_data.significant_terms}
    assert planted <= significant
    assert outcome.outcome == "completed"
    selected = set(outcome.result.interactors.final_selection["term"])
    assert planted <= selected


def test_bootstrap_indices_are_the_seeded_draws(tiny_dataset, output_dir, client_two_workers):
    outcome = run(_config(tiny_dataset, output_dir, n_bootstraps=6), client=client_two_workers)
    indices = pd.read_csv(outcome.run_dir / "input_data" / "bootstrap_indices.csv")
    n = len(outcome.result.data.response)
    stream = np.random.RandomState(3)
    expected = np.stack([stream.randint(0, n, size=n) for _ in range(6)])
    np.testing.assert_array_equal(indices.drop(columns="bootstrap").to_numpy(), expected)
    assert list(indices.columns[:2]) == ["bootstrap", "draw_0"]


def test_no_significant_term_ends_normally_after_stage_one(
    tiny_dataset, output_dir, client_two_workers
):
    # Only a variable unrelated to the response, at a CI level no noise term passes.
    config = _config(
        tiny_dataset,
        output_dir,
        exclude_interactor_variables=("exclude_all",),
        add_model_variables=("TF04",),
        all_data_ci_level=99.9,
        n_bootstraps=12,
    )
    data = tiny_dataset[0]
    assert "TF04" not in data.planted["TF01"]
    outcome = run(config, client=client_two_workers)
    assert outcome.result.topn is None
    assert outcome.outcome.startswith("stopped at stage 1")
    summary = json.loads((outcome.run_dir / "input_data" / "data_summary.json").read_text())
    assert summary["outcome"] == outcome.outcome
    assert (outcome.run_dir / "all_data_results" / "confidence_intervals.csv").exists()
    assert not (outcome.run_dir / "topn_results").exists()


def test_iterative_dropout_rounds(tiny_dataset, output_dir, client_two_workers):
    config = _config(
        tiny_dataset,
        output_dir,
        iterative_dropout=True,
        stabilization_ci_start=60.0,
        stabilization_ci_step=10.0,
    )
    outcome = run(config, client=client_two_workers)
    rounds = pd.read_csv(outcome.run_dir / "all_data_results" / "iterative_dropout.csv")
    assert rounds["round"].tolist() == list(range(len(rounds)))
    expected_levels = [min(60.0 + 10.0 * r, 98.0) for r in rounds["round"]]
    assert rounds["ci_level"].tolist() == expected_levels
    kept = rounds["n_terms_kept"].tolist()
    assert rounds["n_terms_in"].iloc[0] == 7
    assert all(b <= a for a, b in zip(kept, kept[1:]))
    assert len(rounds) >= 2
    # It stops at the first later round that keeps everything it was given (or keeps nothing);
    # the stage's coefficients are that round's fits, over the terms it was given.
    last = rounds.iloc[-1]
    assert last["n_terms_kept"] in (0, last["n_terms_in"])
    given = rounds.iloc[-2]["terms_kept"].split(";")
    coefficients = _coefficients(outcome.run_dir)
    assert coefficients.columns[1:].tolist() == given
    # The last round's verdict, recomputed from those coefficients with numpy.
    tail = (100.0 - last["ci_level"]) / 2
    lower = np.percentile(coefficients[given], tail, axis=0)
    upper = np.percentile(coefficients[given], 100.0 - tail, axis=0)
    kept = [term for term, lo, hi in zip(given, lower, upper) if lo > 0 or hi < 0]
    assert kept == (last["terms_kept"].split(";") if last["n_terms_kept"] else [])


def test_options_shape_the_design(tiny_dataset, output_dir, client_two_workers):
    config = _config(
        tiny_dataset,
        output_dir,
        ptf_main_effect=True,
        squared_pTF=True,
        cubic_pTF=True,
        row_max=True,
        add_model_variables=("TF03",),
        exclude_interactor_variables=("TF02",),
        scale_by_std=True,
        normalize_sample_weights=True,
        stage4_lasso=True,
        stage4_topn=True,
        n_bootstraps=12,
    )
    outcome = run(config, client=client_two_workers)
    columns = _coefficients(outcome.run_dir).columns.tolist()
    assert columns[:2] == ["bootstrap", "TF01"]
    assert "TF01:TF02" not in columns
    assert columns[-4:] == ["I(TF01 ** 2)", "I(TF01 ** 3)", "row_max", "TF03"]
    # Interactors survive to stage 4 (the planted ones among them): its options are checked.
    interactors = outcome.result.interactors
    assert interactors is not None and interactors.method == "lasso"
    assert interactors.n_rows == len(outcome.result.topn.rows) == config.top_n
    table = pd.read_csv(outcome.run_dir / "interactor_significance" / "significance_results.csv")
    assert list(table.columns) == [
        "interactor",
        "variant",
        "r2_lasso_model",
        "coef_interactor",
        "coef_main_effect",
    ]
    stage2 = [t.name for t in outcome.result.topn.significant_terms if t.kind == "interaction"]
    assert table["interactor"].tolist() == stage2
    planted = {f"TF01:{partner}" for partner in tiny_dataset[0].planted["TF01"]}
    assert planted <= set(stage2)
    assert planted <= set(interactors.final_selection["term"])
    assert (table.loc[table["interactor"].isin(planted), "coef_interactor"] != 0).all()


def test_stage_four_rows_follow_the_flag(tiny_dataset, output_dir, client_two_workers):
    outcome = run(_config(tiny_dataset, output_dir), client=client_two_workers)
    assert outcome.result.interactors is not None
    assert outcome.result.interactors.n_rows == len(outcome.result.data.response)


def test_top_n_stage_draws_from_seed_plus_10_and_stratifies_by_the_bins(
    tiny_dataset, output_dir, client_two_workers
):
    bins = (0, 30, 70, np.inf)
    config = _config(tiny_dataset, output_dir, engine="sklearn", bins=bins, n_bootstraps=4)
    result = run(config, client=client_two_workers).result
    topn, binding = result.topn, result.data.predictors["TF01"]
    rows = topn.rows
    n = len(rows)
    assert set(rows) == set(binding.nlargest(config.top_n).index)
    stream = np.random.RandomState(config.random_state + 10)
    draws = np.stack([stream.randint(0, n, size=n) for _ in range(config.n_bootstraps)])
    np.testing.assert_array_equal(topn.draws, draws)
    # Each fit equals a direct LassoCV on the top-N rows: weights from those draws, folds of
    # StratifiedKFold over the classes --bins makes of the rows' pTF binding ranks.
    names = [term.name for term in topn.terms]
    assert all(name.startswith("TF01:") for name in names)
    p = binding.loc[rows].to_numpy()
    X = np.column_stack([p * result.data.predictors.loc[rows, name[5:]] for name in names])
    y = result.data.response.loc[rows].to_numpy()
    ranks = rankdata(-p, method="min")
    classes = np.array([sum(rank > edge for edge in bins) for rank in ranks])
    assert sorted(np.bincount(classes)[1:]) == [30, 40, 50]
    default_classes = np.array([sum(rank > edge for edge in (0, 8, 12)) for rank in ranks])

    def direct_fit(b: int, strata: np.ndarray) -> LassoCV:
        return LassoCV(
            selection="random",
            alphas=100,
            eps=1e-3,
            tol=1e-4,
            max_iter=config.max_iter,
            random_state=b,
            cv=list(StratifiedKFold(4, shuffle=True, random_state=b).split(X, strata)),
        ).fit(X, y, sample_weight=np.bincount(draws[b], minlength=n).astype(float))

    scale = np.abs(topn.fits.coef).max()
    for b in range(config.n_bootstraps):
        direct = direct_fit(b, classes)
        np.testing.assert_allclose(topn.fits.coef[b], direct.coef_, rtol=0, atol=1e-12 * scale)
        assert topn.fits.alpha[b] == pytest.approx(direct.alpha_, rel=1e-12)
    # The check can tell the bins apart: the default bins' folds choose other alphas.
    other = [direct_fit(b, default_classes).alpha_ for b in range(config.n_bootstraps)]
    assert not np.allclose(other, topn.fits.alpha)


@pytest.mark.parametrize("seed", [0])
def test_seed_zero_is_a_seed(tiny_dataset, output_dir, client_two_workers, seed):
    outcome = run(_config(tiny_dataset, output_dir, random_state=seed), client=client_two_workers)
    assert outcome.result.seed == 0
    assert outcome.result.topn.seed == 10


@pytest.mark.parametrize("solver", ["auto", "homotopy"])
def test_engines_agree_on_the_significant_terms(
    small_dataset, output_dir, client_two_workers, monkeypatch, solver
):
    if solver == "homotopy":  # the threaded workers share this module
        monkeypatch.setattr(solver_choice, "CD_MAX_TERMS", 0)
    config = _config(small_dataset, output_dir, n_bootstraps=30, top_n=600, random_state=8)
    reference = run(replace(config, engine="sklearn"), client=client_two_workers).result
    fast = run(replace(config, engine="gram"), client=client_two_workers).result
    for stage in ("all_data", "topn"):
        ref_stage, fast_stage = getattr(reference, stage), getattr(fast, stage)
        assert [t.name for t in ref_stage.significant_terms] == [
            t.name for t in fast_stage.significant_terms
        ]
        scale = np.abs(ref_stage.fits.coef).max()
        np.testing.assert_allclose(
            fast_stage.confidence[["lower", "upper"]], ref_stage.confidence[["lower", "upper"]],
            atol=0.02 * scale,
        )  # fmt: skip
        if solver == "auto":  # few terms in both stages: the coordinate-descent replay
            np.testing.assert_allclose(
                fast_stage.fits.coef, ref_stage.fits.coef, rtol=0, atol=1e-10 * scale
            )
            np.testing.assert_array_equal(fast_stage.fits.n_iter, ref_stage.fits.n_iter)
    assert list(reference.interactors.final_selection["term"]) == list(
        fast.interactors.final_selection["term"]
    )


@pytest.mark.parametrize(
    "engine, solver", [("gram", "gram_cd"), ("gram", "gram_homotopy"), ("sklearn", "sklearn_cd")]
)
def test_solver_and_max_iter_are_recorded(
    tiny_dataset, output_dir, client_two_workers, monkeypatch, caplog, engine, solver
):
    if solver == "gram_homotopy":  # the threaded workers share this module
        monkeypatch.setattr(solver_choice, "CD_MAX_TERMS", 0)
    config = _config(tiny_dataset, output_dir, engine=engine, max_iter=2, stage4_lasso=True)
    outcome = run(config, client=client_two_workers)
    summary = json.loads((outcome.run_dir / "input_data" / "data_summary.json").read_text())
    warnings = [r.getMessage() for r in caplog.records if "reached --max_iter 2" in r.getMessage()]
    stages = [s for s in (outcome.result.all_data, outcome.result.topn) if s is not None]
    for stage in stages:
        directory = "all_data_results" if stage.name == "all_data" else "topn_results"
        statistics = pd.read_csv(outcome.run_dir / directory / "model_statistics.csv")
        assert (statistics["solver"] == solver).all()
        n_reached = int(statistics["max_iter_reached"].sum())
        recorded = summary["stages"][stage.name]
        assert recorded["solver"] == solver
        assert recorded["n_fits_max_iter_reached"] == n_reached
        assert ("homotopy steps" in recorded["n_iter_counts"]) == (solver == "gram_homotopy")
        assert (statistics["n_iter"] <= 2).all()
        # Two sweeps or steps are too few for the stage-1 paths: flagged, warned once.
        assert n_reached > 0 or stage.name == "topn"
        warned = sum(f"{stage.name} stage: {n_reached} of 24" in m for m in warnings)
        assert warned == (n_reached > 0)
    assert len(warnings) == sum(
        summary["stages"][stage.name]["n_fits_max_iter_reached"] > 0 for stage in stages
    )
    if outcome.result.interactors is not None:
        lasso_fit = summary["stages"]["interactors"]["lasso_fit"]
        assert lasso_fit["n_iter"] <= 2 and isinstance(lasso_fit["converged"], bool)


def test_default_max_iter_reaches_nothing(tiny_dataset, output_dir, client_two_workers, caplog):
    outcome = run(_config(tiny_dataset, output_dir, stage4_lasso=True), client=client_two_workers)
    summary = json.loads((outcome.run_dir / "input_data" / "data_summary.json").read_text())
    assert summary["stages"]["all_data"]["n_fits_max_iter_reached"] == 0
    assert summary["stages"]["all_data"]["solver"] == "gram_cd"
    assert summary["stages"]["interactors"]["lasso_fit"]["converged"] is True
    assert not any("--max_iter" in r.getMessage() for r in caplog.records)


def test_another_scikit_learn_release_is_said_in_log_and_summary(
    tiny_dataset, output_dir, client_two_workers, monkeypatch, caplog
):
    import tfbp_dask.engines

    monkeypatch.setattr(tfbp_dask.engines, "version", lambda name: "1.10.0")
    outcome = run(_config(tiny_dataset, output_dir), client=client_two_workers)
    summary = json.loads((outcome.run_dir / "input_data" / "data_summary.json").read_text())
    note = summary["stages"]["all_data"]["solver_note"]
    assert "scikit-learn 1.10.0 is installed" in note
    assert any(note in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    monkeypatch.undo()
    outcome = run(_config(tiny_dataset, output_dir), client=client_two_workers)
    summary = json.loads((outcome.run_dir / "input_data" / "data_summary.json").read_text())
    assert summary["stages"]["all_data"]["solver_note"] is None


def test_same_files_whether_the_workers_or_the_client_write_them(
    tiny_dataset, tmp_path, client_two_workers, monkeypatch
):
    """Workers that see the output directory write the tables; the bytes are the client's."""
    from tfbp_dask.execution import Executor

    config = _config(tiny_dataset, tmp_path / "workers", n_bootstraps=12)
    by_workers = run(config, client=client_two_workers)
    monkeypatch.setattr(Executor, "sees", lambda self, directory: False)
    by_client = run(replace(config, output_dir=tmp_path / "client"), client=client_two_workers)
    names = sorted(
        str(path.relative_to(by_client.run_dir))
        for path in by_client.run_dir.rglob("*")
        if path.suffix in (".csv", ".parquet", ".json") and path.name != "data_summary.json"
    )
    assert "input_data/bootstrap_indices.parquet" in names
    assert "topn_results/bootstrap_coefficients.csv" in names
    for name in names:
        assert (by_workers.run_dir / name).read_bytes() == (by_client.run_dir / name).read_bytes()
    assert not list(tmp_path.rglob(".*.tmp")) and not list(tmp_path.rglob(".tfbp-probe-*"))


def test_workers_see_a_directory_of_this_machine(tmp_path, client_two_workers):
    from tfbp_dask.execution import Executor

    executor = Executor.connect(client=client_two_workers)
    assert executor.sees(tmp_path)
    assert not list(tmp_path.iterdir())  # the probe is gone


def test_the_client_holds_a_stages_draws_as_a_future_and_their_recipe(
    tiny_dataset, output_dir, client_two_workers
):
    """A stage's draws are made by a task on the cluster: the stage result holds a future
    and the recipe (pickled, that is all that travels), and both give resample's draws."""
    config = _config(tiny_dataset, output_dir, n_bootstraps=7)
    result = run(config, client=client_two_workers).result
    draws = result.all_data.draws
    assert isinstance(draws, ClusterDraws)
    n = len(result.data.response)
    stream = np.random.RandomState(3)
    expected = np.stack([stream.randint(0, n, size=n) for _ in range(7)])
    np.testing.assert_array_equal(np.asarray(draws), expected)  # gathered from the cluster
    travelling = pickle.dumps(draws)
    assert len(travelling) < 300  # the recipe, not 7 x 199 row positions
    recipe = pickle.loads(travelling)
    assert isinstance(recipe, SeededDraws) and recipe.shape == (7, n)
    np.testing.assert_array_equal(np.asarray(recipe), expected)  # made again: the same


def test_draws_are_made_here_when_the_cluster_cannot_give_them(
    tiny_dataset, output_dir, client_two_workers
):
    config = _config(tiny_dataset, output_dir, n_bootstraps=5)
    draws = run(config, client=client_two_workers).result.topn.draws
    draws.future.cancel()  # as when the cluster is gone
    n = draws.shape[1]
    stream = np.random.RandomState(3 + 10)
    expected = np.stack([stream.randint(0, n, size=n) for _ in range(5)])
    np.testing.assert_array_equal(np.asarray(draws), expected)


def test_design_made_on_the_cluster_gives_the_same_files(
    tiny_dataset, tmp_path, client_two_workers, monkeypatch
):
    """Stage 1's matrix from the cluster's copy of the batch's predictors, or built and sent
    by the client (inputs not checked once per batch): the same bytes in every table."""
    from tfbp_dask.execution import Executor
    from tfbp_dask.runner import InputCache

    made = []
    design = Executor.design
    monkeypatch.setattr(
        Executor, "design", lambda self, *args: made.append(args[2]) or design(self, *args)
    )
    config = _config(tiny_dataset, tmp_path / "cluster", n_bootstraps=12, row_max=True)
    config = replace(config, squared_pTF=True, ptf_main_effect=True)
    on_cluster = run(config, client=client_two_workers)
    assert made == [config.perturbed_tf]  # stage 1 only: the top-N stage has its own rows
    monkeypatch.setattr(InputCache, "checked", lambda self, config: None)
    here = run(replace(config, output_dir=tmp_path / "here"), client=client_two_workers)
    assert made == [config.perturbed_tf]
    names = sorted(
        str(path.relative_to(here.run_dir))
        for path in here.run_dir.rglob("*")
        if path.suffix in (".csv", ".parquet", ".json") and path.name != "data_summary.json"
    )
    assert "all_data_results/bootstrap_coefficients.csv" in names
    for name in names:
        assert (on_cluster.run_dir / name).read_bytes() == (here.run_dir / name).read_bytes()


@pytest.mark.parametrize(
    ("options", "expected"),
    [({}, True), ({"squared_pTF": True, "row_max": True}, True),
     ({"cubic_pTF": True}, False), ({"scale_by_std": True}, False)],
)  # fmt: skip
def test_matrices_that_could_differ_between_cpus_are_made_by_the_client(options, expected):
    from tfbp_dask.design import stage1_terms
    from tfbp_dask.workflow import _same_bits_anywhere

    config = WorkflowConfig(Path("r"), Path("p"), "TF1", **options)
    terms = stage1_terms(
        "TF1",
        ["TF1", "TF2", "TF3"],
        squared_pTF=config.squared_pTF,
        cubic_pTF=config.cubic_pTF,
        row_max=config.row_max,
    )
    assert _same_bits_anywhere(terms, config) is expected
