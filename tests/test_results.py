"""Reading runs and batches back (``read_run``, ``read_batch``) and ``tfbp-dask summarize``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli_env, dataset_config

from tfbp_dask import read_batch, read_run, run, run_many
from tfbp_dask.cli import main
from tfbp_dask.errors import InputError

STAGE_TABLES = ("bootstrap_coefficients", "model_statistics", "confidence_intervals")
STAGE_TABLES += ("feature_importance",)
STAGE_DIRS = {"all_data": "all_data_results", "topn": "topn_results"}
INTERACTOR_TABLES = ("significance_results", "comparison_statistics", "final_selection")


def _config(dataset, output_dir: Path, **options):
    return dataset_config(
        dataset, output_dir, **{**dict(n_bootstraps=30, random_state=5), **options}
    )


@pytest.fixture(scope="module")
def finished(tiny_dataset, tmp_path_factory, client_two_workers):
    """One small run: its config and its run directory."""
    config = _config(tiny_dataset, tmp_path_factory.mktemp("results_run"))
    outcome = run(config, client=client_two_workers)
    assert outcome.outcome == "completed"
    return config, outcome.run_dir


def _listing(directory: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
    )


def _csv(path: Path) -> pd.DataFrame:
    """A table as pandas reads its CSV, on its own (empty text cells stay empty)."""
    return pd.read_csv(path, keep_default_na=False, na_values=["", "nan"])


def test_read_run_returns_the_csv_tables(finished):
    config, run_dir = finished
    result = read_run(run_dir)
    assert result.perturbed_tf == "TF01" and result.outcome == "completed"
    assert set(result.stages) == {"all_data", "topn"}
    for name, directory in STAGE_DIRS.items():
        stage = result.stage(name)
        for table in STAGE_TABLES:
            expected = _csv(run_dir / directory / f"{table}.csv")
            pd.testing.assert_frame_equal(getattr(stage, table), expected, check_dtype=False)
        assert stage.terms == tuple(stage.bootstrap_coefficients.columns[1:])
        assert stage.significant_terms == tuple(
            stage.confidence_intervals.loc[stage.confidence_intervals["significant"], "term"]
        )
    assert result.stage("all_data").ci_level == config.all_data_ci_level
    assert result.stage("topn").ci_level == config.topn_ci_level
    assert result.interactors is not None and result.interactors.method == "linear"
    for table in INTERACTOR_TABLES:
        expected = _csv(run_dir / "interactor_significance" / f"{table}.csv")
        actual = getattr(result.interactors, table)
        pd.testing.assert_frame_equal(actual, expected.fillna(""), check_dtype=False)
    assert result.options == config.options_record()
    assert result.options["n_bootstraps"] == 30
    assert result.reproducibility["tfbp_dask"] == result.summary["packages"]["tfbp-dask"]
    processed = result.table("input_data/processed_response")
    pd.testing.assert_frame_equal(processed, _csv(run_dir / "input_data/processed_response.csv"))


def test_without_parquet_twins_the_csvs_give_the_same_frames(finished, tmp_path):
    _, run_dir = finished
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    removed = list(copy.rglob("*.parquet"))
    assert removed
    for path in removed:
        path.unlink()
    twins, csvs = read_run(run_dir), read_run(copy)
    for name in twins.stages:
        for table in STAGE_TABLES:
            expected = getattr(twins.stage(name), table)
            pd.testing.assert_frame_equal(getattr(csvs.stage(name), table), expected)
    for table in INTERACTOR_TABLES:
        expected = getattr(twins.interactors, table)
        pd.testing.assert_frame_equal(getattr(csvs.interactors, table), expected)
    pd.testing.assert_frame_equal(
        csvs.table("input_data/processed_predictors"),
        twins.table("input_data/processed_predictors"),
    )
    assert csvs.summary == twins.summary


def test_draws_are_those_of_the_seed_from_either_file(finished, tmp_path):
    config, run_dir = finished
    draws = read_run(run_dir).draws()
    n = read_run(run_dir).stage("all_data").bootstrap_coefficients.shape[0]
    n_rows = read_run(run_dir).summary["feature_counts"]["modeled"]
    assert draws.shape == (n, n_rows)
    stream = np.random.RandomState(config.random_state)  # SPEC §5, one stream in order
    expected = np.vstack([stream.randint(0, n_rows, size=n_rows) for _ in range(n)])
    np.testing.assert_array_equal(draws, expected)
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    (copy / "input_data" / "bootstrap_indices.parquet").unlink()
    np.testing.assert_array_equal(read_run(copy).draws(), draws)


def test_stored_intervals_are_numpy_percentiles_of_the_bootstraps(finished):
    """Checked without tfbp_dask's functions: sorted values, linear interpolation."""
    _, run_dir = finished
    result = read_run(run_dir)
    for stage in result.stages.values():
        coefs = stage.bootstrap_coefficients.drop(columns="bootstrap").to_numpy()
        n = coefs.shape[0]
        tail = (100 - stage.ci_level) / 2
        ordered = np.sort(coefs, axis=0)
        for q, column in ((tail, "lower"), (100 - tail, "upper")):
            h = (n - 1) * q / 100
            low = int(np.floor(h))
            high = min(low + 1, n - 1)
            bound = ordered[low] + (h - low) * (ordered[high] - ordered[low])
            stored = stage.confidence_intervals[column].to_numpy()
            np.testing.assert_allclose(stored, bound, rtol=1e-12, atol=1e-15)
        # significant() at the run's own level gives back the stored table.
        recomputed = result.confidence(stage.name)
        pd.testing.assert_frame_equal(recomputed, stage.confidence_intervals)


def test_significant_at_another_level_equals_a_fresh_run_at_that_level(
    finished, client_two_workers
):
    config, run_dir = finished
    result = read_run(run_dir)
    for option, stage, level in (("all_data_ci_level", "all_data", 60.0),
                                 ("topn_ci_level", "topn", 99.0)):  # fmt: skip
        fresh_config = replace(config, **{option: level}, output_dir=run_dir.parent / option)
        fresh = run(fresh_config, client=client_two_workers).result
        fresh_stage = fresh.all_data if stage == "all_data" else fresh.topn
        recomputed = result.significant(stage, level)
        expected = fresh_stage.confidence[fresh_stage.confidence["significant"]]
        assert list(recomputed["term"]) == [t.name for t in fresh_stage.significant_terms]
        assert list(recomputed["term"]) == list(expected["term"])
        np.testing.assert_array_equal(recomputed["lower"], expected["lower"])
        np.testing.assert_array_equal(recomputed["upper"], expected["upper"])
        assert (recomputed["ci_level"] == level).all()
    # The levels chosen change the answer: the test compares something.
    assert set(result.significant("all_data", 60.0)["term"]) != set(
        result.stage("all_data").significant_terms
    ) or set(result.significant("topn", 99.0)["term"]) != set(
        result.stage("topn").significant_terms
    )


def test_bad_paths_are_one_line_input_errors(finished, tmp_path):
    _, run_dir = finished
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path: "not a run directory",
        run_dir / "input_data" / "data_summary.json": "not a directory",
    }
    for path, problem in cases.items():
        with pytest.raises(InputError, match=problem) as caught:
            read_run(path)
        assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    partial = tmp_path / "TF01_20240101_000000.partial"
    partial.mkdir()
    with pytest.raises(InputError, match="unfinished run"):
        read_run(partial)
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    for suffix in (".csv", ".parquet"):
        (broken / "topn_results" / f"model_statistics{suffix}").unlink()
    with pytest.raises(InputError, match="model_statistics.csv: is missing") as caught:
        read_run(broken)
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="CI level"):
        read_run(run_dir).significant("all_data", 100.0)
    with pytest.raises(InputError, match="did not run"):
        read_run(run_dir).significant("stage9", 90.0)


def test_summarize_prints_and_writes_nothing(finished, tmp_path, capsys, monkeypatch):
    _, run_dir = finished
    monkeypatch.chdir(tmp_path)
    before, cwd_before = _listing(run_dir), _listing(tmp_path)
    main(["summarize", str(run_dir)])
    printed = capsys.readouterr().out
    result = read_run(run_dir)
    for name, stage in result.stages.items():
        assert f"{name}: {len(stage.significant_terms)} of {len(stage.terms)} terms" in printed
        for term in stage.significant_terms:
            assert f"  {term} " in printed
    main(["summarize", str(run_dir), "--ci_level", "60"])
    at_60 = capsys.readouterr().out
    assert "at the 60% CI" in at_60
    assert _listing(run_dir) == before and _listing(tmp_path) == cwd_before
    main(["summarize", str(run_dir), "--ci_level", "60", "--output", "terms.csv"])
    capsys.readouterr()
    written = pd.read_csv(tmp_path / "terms.csv")
    expected = result.significant("all_data", 60)
    assert list(written.loc[written["stage"] == "all_data", "term"]) == list(expected["term"])
    assert _listing(run_dir) == before
    assert [p.name for p in tmp_path.iterdir()] == ["terms.csv"]


def test_summarize_bad_path_exits_2_with_one_line(tmp_path):
    for path in (tmp_path / "nowhere", tmp_path):
        done = subprocess.run(
            [sys.executable, "-m", "tfbp_dask", "summarize", str(path)],
            capture_output=True, text=True, env=cli_env(), timeout=120,
        )  # fmt: skip
        assert done.returncode == 2
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tfbp-dask: error: ")
        assert str(path) in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_read_batch_reads_the_tables_and_its_runs_lazily(
    tiny_dataset, tmp_path, client_two_workers, capsys
):
    base = _config(tiny_dataset, tmp_path / "batch", n_bootstraps=16)
    entries = run_many(
        [replace(base, perturbed_tf=tf) for tf in ("TF01", "TF02")], client=client_two_workers
    )
    batch = read_batch(tmp_path / "batch")
    (table_path,) = (tmp_path / "batch").glob("batch_*[0-9].csv")
    assert table_path.name == f"batch_{batch.timestamp}.csv"
    expected = _csv(table_path)
    expected["error"] = expected["error"].astype(object).where(expected["error"].notna(), "")
    pd.testing.assert_frame_equal(batch.table, expected, check_dtype=False)
    interactions = _csv(table_path.with_name(f"batch_{batch.timestamp}_interactions.csv"))
    assert len(batch.interactions) == len(interactions) > 0
    assert list(batch.interactions.columns) == list(interactions.columns)
    np.testing.assert_array_equal(
        batch.interactions["all_data_lower"], interactions["all_data_lower"]
    )
    assert batch._runs == {}  # nothing read yet
    assert batch.run_dirs == {e.perturbed_tf: e.run_dir for e in entries}
    second = batch.run("TF02")
    assert set(batch._runs) == {"TF02"}
    kept = batch.interactions.loc[batch.interactions["perturbed_tf"] == "TF02", "term"]
    terms = second.stage("all_data").significant_terms
    assert list(kept) == [t for t in terms if t.startswith("TF02:")]
    assert [r.perturbed_tf for r in batch.runs()] == ["TF01", "TF02"]
    with pytest.raises(InputError, match="no run directory for TF 'TF09'"):
        batch.run("TF09")
    # Without the Parquet twins the CSVs give the same frames.
    for path in (tmp_path / "batch").glob("batch_*.parquet"):
        path.unlink()
    from_csv = read_batch(tmp_path / "batch")
    pd.testing.assert_frame_equal(from_csv.table, batch.table)
    pd.testing.assert_frame_equal(from_csv.interactions, batch.interactions)
    # summarize a batch: one line per TF, nothing written.
    before = _listing(tmp_path)
    main(["summarize", str(tmp_path / "batch"), "--ci_level", "90"])
    printed = capsys.readouterr().out
    assert f"batch {batch.timestamp}: 2 TFs" in printed
    assert "n_significant_all_data_at_90" in printed
    assert _listing(tmp_path) == before
    with pytest.raises(InputError, match="no batch_"):
        read_batch(tmp_path)


def test_a_run_that_stopped_early_reads_and_summarizes(
    tiny_dataset, tmp_path, client_two_workers, capsys
):
    """Too few top-N rows: the run stops after stage 1 and has no top-N tables."""
    config = _config(tiny_dataset, tmp_path, top_n=3)
    outcome = run(config, client=client_two_workers)
    assert outcome.outcome.startswith("stopped at stage 2")
    result = read_run(outcome.run_dir)
    assert set(result.stages) == {"all_data"} and result.interactors is None
    assert result.outcome == outcome.outcome
    with pytest.raises(InputError, match="'topn' did not run"):
        result.significant("topn", 90.0)
    main(["summarize", str(outcome.run_dir)])
    printed = capsys.readouterr().out
    assert "stopped at stage 2" in printed and "topn" not in printed


def test_csv_alone_keeps_ids_and_column_types(tmp_path):
    """Ids that look like numbers, columns named like text columns, empty text cells."""
    from tfbp_dask.results import read_table
    from tfbp_dask.tables import write_table

    tables = {
        "processed": pd.DataFrame({"feature": ["0001", "NA", "G3"], "status": [1.0, 2.0, 3.5]}),
        "coefficients": pd.DataFrame({"bootstrap": [0, 1], "term": [0.0, 1.5], "NA": [2.0, 0]}),
        "comparison": pd.DataFrame(
            {"model": ["a", "b"], "interactor": ["", ""], "fold": [0, 1], "r2": [0.5, np.nan]}
        ),
    }
    for name, frame in tables.items():
        write_table(frame, tmp_path / name)
        floats = name == "coefficients"
        from_twin = read_table(tmp_path / name, floats)
        (tmp_path / f"{name}.parquet").unlink()
        pd.testing.assert_frame_equal(read_table(tmp_path / name, floats), from_twin)
    assert list(from_twin["interactor"]) == ["", ""]
    assert list(read_table(tmp_path / "processed")["feature"]) == ["0001", "NA", "G3"]
