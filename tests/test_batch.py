"""Many TFs on one cluster: each TF as if run alone, failures isolated, the batch table."""

from __future__ import annotations

import gc
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


def test_batch_numbers_equal_single_runs(tiny_dataset, tmp_path, client_two_workers):
    base = _config(tiny_dataset, tmp_path / "batch")
    configs = [replace(base, perturbed_tf=tf) for tf in ("TF01", "TF02", "TF03")]
    seen = []
    entries = run_many(configs, client=client_two_workers, tfs_progress=lambda d, t: seen.append(d))
    assert [e.perturbed_tf for e in entries] == ["TF01", "TF02", "TF03"]
    assert seen == [1, 2, 3]
    single = run(replace(base, perturbed_tf="TF02", output_dir=tmp_path / "one"),
                 client=client_two_workers)  # fmt: skip
    batch_dir = entries[1].run_dir
    tables = sorted(path.relative_to(single.run_dir) for path in single.run_dir.rglob("*.csv"))
    assert tables == sorted(path.relative_to(batch_dir) for path in batch_dir.rglob("*.csv"))
    assert Path("topn_results/bootstrap_coefficients.csv") in tables
    for table in tables:
        assert (batch_dir / table).read_bytes() == (single.run_dir / table).read_bytes(), table
    (table_path,) = (tmp_path / "batch").glob("batch_*[0-9].csv")
    table = pd.read_csv(table_path, keep_default_na=False)
    assert table["perturbed_tf"].tolist() == ["TF01", "TF02", "TF03"]
    assert (table["status"] != "failed").all()
    assert table.loc[1, "n_significant_all_data"] == len(single.result.all_data.significant_terms)
    assert client_two_workers.status == "running"


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
