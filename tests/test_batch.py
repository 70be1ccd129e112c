"""Many TFs on one cluster: each TF as if run alone, failures isolated, the batch table."""

from __future__ import annotations

import gc
import json
import subprocess
import weakref
from dataclasses import fields, replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import dataset_config

import tfbp_dask.batch
from tfbp_dask import BatchEntry, WorkflowConfig, run, run_many
from tfbp_dask.errors import InputError


def _config(dataset, output_dir: Path, **options) -> WorkflowConfig:
    return dataset_config(
        dataset, output_dir, **{**dict(n_bootstraps=16, random_state=11), **options}
    )


@pytest.mark.parametrize("batch_tasks", ["per_tf", "per_chunk"])
def test_batch_numbers_equal_single_runs(tiny_dataset, tmp_path, client_two_workers, batch_tasks):
    base = _config(tiny_dataset, tmp_path / "batch", batch_tasks=batch_tasks)
    configs = [replace(base, perturbed_tf=tf) for tf in ("TF01", "TF02", "TF03")]
    seen = []
    entries = run_many(configs, client=client_two_workers, tfs_progress=lambda d, t: seen.append(d))
    assert [e.perturbed_tf for e in entries] == ["TF01", "TF02", "TF03"]
    assert seen == [1, 2, 3]
    single = run(replace(base, perturbed_tf="TF02", output_dir=tmp_path / "one"),
                 client=client_two_workers)  # fmt: skip
    batch_dir = entries[1].run_dir
    summary = json.loads((batch_dir / "input_data" / "data_summary.json").read_text())
    assert summary["cluster"].get("batch_tasks") == ("per_tf" if batch_tasks == "per_tf" else None)
    tables = sorted(path.relative_to(single.run_dir) for path in single.run_dir.rglob("*.csv"))
    assert tables == sorted(path.relative_to(batch_dir) for path in batch_dir.rglob("*.csv"))
    assert Path("topn_results/bootstrap_coefficients.csv") in tables
    shared_predictors = Path("input_data/processed_predictors.csv")
    for table in tables:
        if table != shared_predictors:
            assert (batch_dir / table).read_bytes() == (single.run_dir / table).read_bytes(), table
    # The batch's predictors table: the single run's rows, and the pTF's own row.
    batch_lines = (batch_dir / shared_predictors).read_text().splitlines()
    single_lines = (single.run_dir / shared_predictors).read_text().splitlines()
    assert [line for line in batch_lines if not line.startswith("TF02,")] == single_lines
    assert len(batch_lines) == len(single_lines) + 1
    (table_path,) = (tmp_path / "batch").glob("batch_*[0-9].csv")
    table = pd.read_csv(table_path, keep_default_na=False)
    assert table["perturbed_tf"].tolist() == ["TF01", "TF02", "TF03"]
    assert (table["status"] != "failed").all()
    assert table.loc[1, "n_significant_all_data"] == len(single.result.all_data.significant_terms)
    assert client_two_workers.status == "running"


def test_a_batch_keeps_shared_inputs_once(tiny_dataset, tmp_path, client_two_workers):
    """Predictors and identical draws are hard links to the batch's store; a copy stands alone."""
    base = _config(tiny_dataset, tmp_path / "out", random_state=None, batch_tasks="per_tf")
    entries = run_many(
        [replace(base, perturbed_tf=tf) for tf in ("TF01", "TF02", "TF03")],
        client=client_two_workers,
    )
    (store,) = (tmp_path / "out").glob("batch_*_input_data")
    seeds = set()
    for entry in entries:
        inputs = entry.run_dir / "input_data"
        for name in ("processed_predictors", "bootstrap_indices"):
            for suffix in (".csv", ".parquet"):
                linked = inputs / f"{name}{suffix}"
                assert linked.stat().st_nlink == 4, linked  # the store's file + 3 TFs
                (original,) = store.glob(f"{name}*{suffix}")
                assert linked.samefile(original)
        summary = json.loads((inputs / "data_summary.json").read_text())
        seeds.add(summary["seed"])
        assert summary["seed_source"] == "os entropy"
        assert not (entry.run_dir / "all_data_results" / "diagnostic_plots").exists()
    assert len(seeds) == 1  # one drawn seed for the batch: the same draws
    # The draws are those a single run with that seed makes, byte for byte.
    single = run(
        replace(base, perturbed_tf="TF03", random_state=seeds.pop(), output_dir=tmp_path / "one"),
        client=client_two_workers,
    )
    for name in ("bootstrap_indices.csv", "bootstrap_indices.parquet"):
        assert (single.run_dir / "input_data" / name).read_bytes() == (
            entries[2].run_dir / "input_data" / name
        ).read_bytes()
    # Copied without link flags, a run directory holds its own bytes.
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(entries[0].run_dir), str(copy)], check=True)
    copied = copy / "input_data" / "processed_predictors.csv"
    assert copied.stat().st_nlink == 1
    assert copied.read_bytes() == (entries[0].run_dir / "input_data" / copied.name).read_bytes()


def test_batch_figures_draws_each_tfs_figures(tiny_dataset, tmp_path, client_two_workers):
    base = _config(tiny_dataset, tmp_path, batch_figures=True)
    entries = run_many([replace(base, perturbed_tf=tf) for tf in ("TF01", "TF02")],
                       client=client_two_workers)  # fmt: skip
    for entry in entries:
        plots = entry.run_dir / "all_data_results" / "diagnostic_plots"
        assert (plots / "coefficient_cis.png").read_bytes().startswith(b"\x89PNG")


def test_one_tf_failing_spares_the_others(tiny_dataset, tmp_path, client_two_workers):
    base = _config(tiny_dataset, tmp_path)
    configs = [replace(base, perturbed_tf=tf) for tf in ("TF01", "NOPE", "TF04")]
    entries = run_many(configs, client=client_two_workers, max_concurrent_tfs=1)
    status = {e.perturbed_tf: e.status for e in entries}
    assert status["NOPE"] == "failed"
    assert status["TF01"] != "failed" and status["TF04"] != "failed"
    assert "NOPE" in entries[1].error and entries[1].run_dir is None


def test_a_bad_file_fails_the_whole_batch_before_anything(tiny_dataset, tmp_path):
    base = _config(tiny_dataset, tmp_path / "out", response_file=tmp_path / "missing.csv")
    with pytest.raises(InputError, match="missing.csv"):
        run_many([base, replace(base, perturbed_tf="TF02")])
    assert not (tmp_path / "out").exists()


def test_the_batch_client_holds_the_arrays_of_the_tfs_in_flight_only(
    tiny_dataset, tmp_path, client_two_workers, monkeypatch
):
    """Inputs are prepared when a TF starts and dropped when it ends; entries hold no arrays."""
    prepared: list[weakref.ref] = []
    real_prepare = tfbp_dask.batch.prepare

    def tracked_prepare(config, cache):
        data = real_prepare(config, cache)
        prepared.append(weakref.ref(data))
        return data

    monkeypatch.setattr(tfbp_dask.batch, "prepare", tracked_prepare)
    alive_at_each_end = []

    def count_alive(done: int, total: int) -> None:
        gc.collect()
        alive_at_each_end.append(sum(ref() is not None for ref in prepared))

    tfs = [f"TF0{i}" for i in range(1, 9)] + [f"TF0{i}" for i in range(1, 5)]
    base = _config(tiny_dataset, tmp_path, n_bootstraps=8)
    configs = [replace(base, perturbed_tf=tf) for tf in tfs]
    entries = run_many(
        configs, client=client_two_workers, tfs_progress=count_alive, max_concurrent_tfs=2
    )
    assert len(entries) == 12 and all(e.status != "failed" for e in entries)
    assert len(prepared) == 12  # each TF prepared in its own turn
    assert len(alive_at_each_end) == 12
    # When a TF ends, at most the two TFs in flight (one may have just started) hold data.
    assert max(alive_at_each_end) <= 2, alive_at_each_end
    gc.collect()
    assert sum(ref() is not None for ref in prepared) == 0
    assert {f.name for f in fields(BatchEntry)} == {
        "perturbed_tf", "status", "run_dir", "n_significant_all_data", "n_significant_topn",
        "final_selection", "wall_seconds", "error", "interactions",
    }  # fmt: skip


def test_stages_fitted_at_once_share_the_workers_with_larger_chunks():
    from tfbp_dask.execution import default_chunk_size

    assert default_chunk_size(200, 2) == 25  # one TF: about four tasks per worker
    assert default_chunk_size(200, 2, n_stages=4) == 100  # a batch: fewer, larger tasks
    assert default_chunk_size(1000, 64) == 10
    assert default_chunk_size(1000, 64, n_stages=32) == 125
    assert default_chunk_size(1000, 64, n_stages=128) == 500
    assert default_chunk_size(1000, 64, n_stages=512) == 500  # never larger
    assert default_chunk_size(5, 8, n_stages=1) == 10


def _half(shared: dict, value: int) -> float:
    if value < 0:
        raise ValueError(f"negative: {value}")
    return shared["scale"] * value / 2


def test_per_tf_tasks_hand_back_values_and_errors_one_by_one(client_two_workers):
    """A batch's per-TF tasks: each one's value, or the error its task ended with, while
    the others go on."""
    from tfbp_dask.execution import Executor

    executor = Executor.connect(client=client_two_workers)
    ended = executor.run_tasks(_half, {"scale": 3}, [(4,), (-1,), (10,)], ["a", "b", "c"])
    results = {position: (value, error) for position, value, error in ended}
    assert sorted(results) == [0, 1, 2]
    assert results[0] == (6.0, None) and results[2] == (15.0, None)
    value, error = results[1]
    assert value is None and isinstance(error, ValueError) and "negative: -1" in str(error)
