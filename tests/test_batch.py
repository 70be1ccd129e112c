"""Many TFs on one cluster: each TF as if run alone, failures isolated, the batch table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import dataset_config

from tfbp_dask import WorkflowConfig, run, run_many
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
    assert table.loc[1, "n_significant_all_data"] == len(
        entries[1].outcome.result.all_data.significant_terms
    )
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
