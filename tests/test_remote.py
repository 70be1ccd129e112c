"""Real scheduler and worker processes on 127.0.0.1: remote runs, batches, bad addresses."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
from conftest import dataset_config, run_cli

from tfbp_dask import WorkflowConfig, run
from tfbp_dask.datagen import make_dataset, write_dataset


def _config(dataset, output_dir: Path, **options) -> WorkflowConfig:
    return dataset_config(
        dataset, output_dir, **{**dict(n_bootstraps=20, random_state=5), **options}
    )


def _same_tables(first: Path, second: Path) -> None:
    for stage in ("all_data_results", "topn_results"):
        for name in ("bootstrap_coefficients.csv", "confidence_intervals.csv"):
            assert (first / stage / name).read_bytes() == (second / stage / name).read_bytes()
    for name in ("significance_results.csv", "final_selection.csv"):
        a = first / "interactor_significance" / name
        assert a.read_bytes() == (second / "interactor_significance" / name).read_bytes()


def test_remote_cluster_gives_the_embedded_numbers(
    tiny_dataset, tmp_path, remote_cluster, client_two_workers
):
    config = _config(tiny_dataset, tmp_path)
    embedded = run(config, client=client_two_workers)
    remote = run(replace(config, scheduler_address=remote_cluster.address))
    assert remote.result.all_data is not None
    _same_tables(embedded.run_dir, remote.run_dir)
    summary = (remote.run_dir / "input_data" / "data_summary.json").read_text()
    assert remote_cluster.address in summary


def test_cli_batch_on_remote_cluster_survives_a_failing_tf(tiny_dataset, tmp_path, remote_cluster):
    data, response, predictors = tiny_dataset
    broken = tmp_path / "response_without_tf02.csv"
    data.response.drop(columns="TF02").to_csv(broken, index=False)
    out = tmp_path / "batch"
    done = run_cli(
        "--response_file", str(broken), "--predictors_file", str(predictors),
        "--perturbed_tf", "TF01,TF02,TF03", "--n_bootstraps", "16", "--top_n", "120",
        "--random_state", "1", "--output_dir", str(out),
        "--scheduler_address", remote_cluster.address,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # one TF failed
    (batch_csv,) = out.glob("batch_*[0-9].csv")
    table = pd.read_csv(batch_csv, keep_default_na=False).set_index("perturbed_tf")
    assert list(table.columns) == [
        "status", "run_dir", "n_significant_all_data", "n_significant_topn",
        "final_selection", "wall_seconds", "error",
    ]  # fmt: skip
    assert table.loc["TF02", "status"] == "failed"
    assert "TF02" in table.loc["TF02", "error"] and table.loc["TF02", "run_dir"] == ""
    for tf in ("TF01", "TF03"):
        assert table.loc[tf, "status"] in ("completed", "stopped")
        run_dir = Path(table.loc[tf, "run_dir"])
        assert run_dir.is_dir() and run_dir.name.startswith(f"{tf}_")
        log = next(run_dir.glob("tfbpmodeling_*.log")).read_text()
        other = "TF03" if tf == "TF01" else "TF01"
        assert f"{tf}:" in log and f"{other}: " not in log  # each log holds its own TF
    assert not list(out.glob("TF02_*"))


def test_unreachable_scheduler_exits_2_quickly(tiny_dataset, tmp_path):
    _, response, predictors = tiny_dataset
    started = time.monotonic()
    done = run_cli(
        "--response_file", str(response), "--predictors_file", str(predictors),
        "--perturbed_tf", "TF01", "--output_dir", str(tmp_path / "out"),
        "--scheduler_address", "tcp://127.0.0.1:9", "--connect_timeout", "5",
        timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "tcp://127.0.0.1:9" in lines[0], done.stderr
    assert elapsed < 30
    assert not (tmp_path / "out").exists()


def test_cli_all_and_tfs_file_name_the_batch(tmp_path, remote_cluster):
    data = make_dataset(n_genes=120, n_tfs=4, noise=0.5, seed=2)
    response, predictors = write_dataset(data, tmp_path / "data")
    common = [
        "--response_file", str(response), "--predictors_file", str(predictors),
        "--n_bootstraps", "8", "--top_n", "60", "--random_state", "1",
        "--scheduler_address", remote_cluster.address,
    ]  # fmt: skip
    done = run_cli(*common, "--perturbed_tf", "all", "--output_dir", str(tmp_path / "all"))
    assert done.returncode == 0, done.stderr
    (batch_csv,) = (tmp_path / "all").glob("batch_*[0-9].csv")
    assert pd.read_csv(batch_csv)["perturbed_tf"].tolist() == ["TF01", "TF02", "TF03", "TF04"]
    tfs_file = tmp_path / "tfs.txt"
    tfs_file.write_text("# two of them\nTF03\n\nTF01\n")
    out = ["--output_dir", str(tmp_path / "f")]
    done = run_cli(*common, "--perturbed_tfs_file", str(tfs_file), *out)
    assert done.returncode == 0, done.stderr
    (batch_csv,) = (tmp_path / "f").glob("batch_*[0-9].csv")
    assert pd.read_csv(batch_csv)["perturbed_tf"].tolist() == ["TF03", "TF01"]


class _ClusterOfVersions:
    """A client stand-in whose scheduler and workers report the given tfbp_dask versions."""

    def __init__(self, scheduler: str | Exception, workers: dict[str, str]) -> None:
        from types import SimpleNamespace

        self.scheduler = SimpleNamespace(address="tcp://127.0.0.1:1")
        self._scheduler, self._workers = scheduler, workers

    def wait_for_workers(self, n: int, timeout: float) -> None:
        pass

    def run_on_scheduler(self, function):
        if isinstance(self._scheduler, Exception):
            raise self._scheduler
        return self._scheduler

    def run(self, function):
        return dict(self._workers)


def test_scheduler_and_workers_must_run_this_version():
    import pytest

    from tfbp_dask import __version__
    from tfbp_dask.errors import ClusterUnavailable
    from tfbp_dask.execution import Executor

    def check(scheduler, workers):
        Executor(client=_ClusterOfVersions(scheduler, workers), owns_client=False).check_workers(1)

    check(__version__, {"tcp://w1": __version__, "tcp://w2": __version__})
    with pytest.raises(ClusterUnavailable, match="scheduler at tcp://127.0.0.1:1 must run .*0.0.1"):
        check("0.0.1", {"tcp://w1": __version__})
    with pytest.raises(ClusterUnavailable, match="none it can import .*No module named"):
        check(ModuleNotFoundError("No module named 'tfbp_dask'"), {"tcp://w1": __version__})
    with pytest.raises(ClusterUnavailable, match="workers must run .*tcp://w2 has 0.0.1"):
        check(__version__, {"tcp://w1": __version__, "tcp://w2": "0.0.1"})
