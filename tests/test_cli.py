"""The command end to end: layout, planted interactions, reproducibility, bad input (exit 2)."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import llvmlite.binding as llvm
import numpy as np
import pandas as pd
import pytest
from bad_input_cases import CASES, PERTURBED_TF, valid_files
from conftest import ClusterStub, png_size, run_cli

from tfbp_dask import WorkflowConfig
from tfbp_dask.cli import main

COMMAND = "linear_perturbation_binding_modeling"
TABLES = (
    "bootstrap_coefficients",
    "confidence_intervals",
    "model_statistics",
    "feature_importance",
)
PLOTS = ("coefficient_cis.png", "alpha_distribution.png", "selection_frequency.png")


def _run_dirs(output_dir: Path) -> list[Path]:
    return sorted(output_dir.iterdir()) if output_dir.exists() else []


def _assert_twin(path_without_suffix: Path) -> pd.DataFrame:
    csv = pd.read_csv(path_without_suffix.with_suffix(".csv"))
    parquet = pd.read_parquet(path_without_suffix.with_suffix(".parquet"))
    assert list(csv.columns) == list(parquet.columns)
    assert len(csv) == len(parquet)
    return parquet


def test_full_run_writes_the_documented_layout(small_dataset, tmp_path):
    data, response, predictors = small_dataset
    output_dir = tmp_path / "out"
    done = run_cli(
        "--response_file",
        str(response),
        "--predictors_file",
        str(predictors),
        "--perturbed_tf",
        "TF01",
        "--n_bootstraps",
        "50",
        "--random_state",
        "42",
        "--n_cpus",
        "2",
        "--output_dir",
        str(output_dir),
        "--output_suffix",
        "_test",
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = _run_dirs(output_dir)
    assert run_dir.name.startswith("TF01_test_") and not run_dir.name.endswith(".partial")
    timestamp = run_dir.name.removeprefix("TF01_test_")
    # The process ends without interpreter teardown: the log must still be complete.
    log_lines = (run_dir / f"tfbpmodeling_{timestamp}.log").read_text().splitlines()
    assert log_lines[-1].endswith("TF01: completed")
    assert (
        "2 worker threads in this process, figures drawn in a process of their own; no dashboard"
        in done.stderr
    )
    for stage in ("all_data_results", "topn_results"):
        for table in TABLES:
            _assert_twin(run_dir / stage / table)
        for plot in PLOTS:
            assert (run_dir / stage / "diagnostic_plots" / plot).read_bytes()[:4] == b"\x89PNG"
    coefficients = _assert_twin(run_dir / "all_data_results" / "bootstrap_coefficients")
    assert coefficients["bootstrap"].tolist() == list(range(50))
    statistics = _assert_twin(run_dir / "all_data_results" / "model_statistics")
    assert list(statistics.columns) == [
        "bootstrap",
        "alpha",
        "cv_mse",
        "r2",
        "n_nonzero",
        "n_iter",
        "max_iter_reached",
        "solver",
    ]
    assert (statistics["solver"] == "gram_cd").all() and not statistics["max_iter_reached"].any()
    ci = _assert_twin(run_dir / "all_data_results" / "confidence_intervals")
    assert list(ci.columns) == ["term", "ci_level", "lower", "upper", "significant"]
    importance = _assert_twin(run_dir / "all_data_results" / "feature_importance")
    assert list(importance.columns) == [
        "term",
        "mean",
        "median",
        "std",
        "selection_frequency",
        "lower",
        "upper",
        "significant",
        "rank",
    ]
    for table in ("significance_results", "comparison_statistics", "final_selection"):
        _assert_twin(run_dir / "interactor_significance" / table)
    significance = pd.read_parquet(
        run_dir / "interactor_significance" / "significance_results.parquet"
    )
    assert len(significance) > 0
    delta_r2 = run_dir / "interactor_significance" / "interaction_plots" / "delta_r2.png"
    # One bar per interactor: the figure is 1.5 in + 0.35 in per row tall, at 100 dpi.
    assert png_size(delta_r2.read_bytes())[1] == round(100 * (1.5 + 0.35 * len(significance)))
    for table in ("processed_response", "processed_predictors"):
        _assert_twin(run_dir / "input_data" / table)
    # The draws' twin: one list of row positions per bootstrap, the CSV's numbers in order.
    wide = pd.read_csv(run_dir / "input_data" / "bootstrap_indices.csv")
    assert wide.shape == (50, 1 + 999)  # the pTF's own row is always blacklisted
    indices = pd.read_parquet(run_dir / "input_data" / "bootstrap_indices.parquet")
    assert list(indices.columns) == ["bootstrap", "draws"]
    assert (indices["bootstrap"] == wide["bootstrap"]).all()
    np.testing.assert_array_equal(np.stack(indices["draws"].to_numpy()), wide.iloc[:, 1:])

    planted = {f"TF01:{partner}" for partner in data.planted["TF01"]}
    significant = set(ci.loc[ci["significant"], "term"])
    assert planted <= significant

    # The reproducibility record, each value from its own source.
    record = json.loads((run_dir / "input_data" / "data_summary.json").read_text())[
        "reproducibility"
    ]
    typed = record["command_line"].split()
    assert typed[:4] == ["python", "-m", "tfbp_dask", COMMAND]
    assert typed[-2:] == ["--output_suffix", "_test"] and str(response) in typed
    assert record["numba"] == metadata.version("numba")
    assert record["llvmlite"] == metadata.version("llvmlite")
    assert record["tfbp_dask"] == metadata.version("tfbp-dask")
    assert record["python"] == platform.python_version()
    target = record["machine"]["solver_cpu_target"]
    assert target["cpu_name"] == llvm.get_host_cpu_name() and not target["fastmath"]
    assert target["cpu_features"] == llvm.get_host_cpu_features().flatten()
    cpuinfo = Path("/proc/cpuinfo").read_text()
    assert f": {record['machine']['cpu_model']}" in cpuinfo
    # An embedded cluster's worker processes run on this machine.
    assert [m["cpu_model"] for m in record["worker_machines"]] == [record["machine"]["cpu_model"]]
    # The JSON files hold the significant terms' intervals and stage 4's table, value for value.
    for name, stage in (
        ("all_data_significant_98-0", "all_data"),
        ("topn_significant_90-0", "topn"),
    ):
        table = pd.read_parquet(run_dir / f"{stage}_results" / "confidence_intervals.parquet")
        table = table[table["significant"]]
        assert len(table) > 0
        expected = {row.term: [row.lower, row.upper] for row in table.itertuples()}
        assert json.loads((run_dir / f"{name}.json").read_text()) == expected
    all_data_json = json.loads((run_dir / "all_data_significant_98-0.json").read_text())
    assert set(all_data_json) == significant
    vs_main = json.loads((run_dir / "interactor_vs_main_result.json").read_text())
    assert vs_main == significance.to_dict(orient="records")
    assert {row["interactor"] for row in vs_main} <= significant

    summary = json.loads((run_dir / "input_data" / "data_summary.json").read_text())
    assert summary["seed"] == 42 and summary["seeds"]["topn"] == 52
    assert summary["outcome"] == "completed"
    assert summary["cluster"]["workers"] == 2 and summary["cluster"]["embedded"] is True
    assert summary["feature_counts"]["modeled"] == 999
    assert len(summary["inputs"]["response_file"]["sha256"]) == 64
    assert summary["options"]["bins"] == "0,8,12,np.inf"
    assert set(summary["wall_seconds"]) >= {"all_data", "topn", "interactors", "total"}
    assert not list(run_dir.rglob("*.pkl")) and not list(run_dir.rglob("*.tmp"))
    assert "results in" in done.stdout


def test_run_without_seed_records_a_seed_that_reproduces_it(tiny_dataset, tmp_path):
    _, response, predictors = tiny_dataset
    common = [
        "--response_file",
        str(response),
        "--predictors_file",
        str(predictors),
        "--perturbed_tf",
        "TF01",
        "--n_bootstraps",
        "16",
        "--top_n",
        "120",
        "--n_cpus",
        "1",
    ]
    first = run_cli(*common, "--output_dir", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    (run_a,) = _run_dirs(tmp_path / "a")
    seed = json.loads((run_a / "input_data" / "data_summary.json").read_text())["seed"]
    # The second run also leaves out the input tables' Parquet twins (not the results').
    second = run_cli(
        *common,
        "--random_state",
        str(seed),
        "--no_input_parquet",
        "--output_dir",
        str(tmp_path / "b"),
    )
    assert second.returncode == 0, second.stderr
    (run_b,) = _run_dirs(tmp_path / "b")
    assert len(list((run_a / "input_data").glob("*.parquet"))) == 3
    assert not list((run_b / "input_data").glob("*.parquet"))
    results = sorted(path.relative_to(run_a) for path in run_a.rglob("*_results/*.parquet"))
    assert results == sorted(path.relative_to(run_b) for path in run_b.rglob("*_results/*.parquet"))
    assert Path("all_data_results/bootstrap_coefficients.parquet") in results
    summary = json.loads((run_b / "input_data" / "data_summary.json").read_text())
    assert summary["options"]["no_input_parquet"] is True
    # The same tables, byte for byte, whichever stage the drawn seed let the run reach.
    tables = sorted(path.relative_to(run_a) for path in run_a.rglob("*.csv"))
    assert tables == sorted(path.relative_to(run_b) for path in run_b.rglob("*.csv"))
    assert Path("input_data/bootstrap_indices.csv") in tables
    assert Path("all_data_results/bootstrap_coefficients.csv") in tables
    for table in tables:
        assert (run_a / table).read_bytes() == (run_b / table).read_bytes(), table


def _as_argv(kwargs: dict) -> list[str]:
    argv = [COMMAND]
    for key, value in kwargs.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(value)
        argv += [f"--{key}", str(value)]
    return argv


def _must_not_run():
    pytest.fail("bad input got as far as using the cluster")


def _expect_exit_2(argv: list[str], capsys, output_dir: Path) -> str:
    import tfbp_dask.api

    with (
        mock.patch.object(
            tfbp_dask.api, "_connect", lambda *args, **kwargs: ClusterStub(_must_not_run)
        ),
        pytest.raises(SystemExit) as stop,
    ):
        main(argv + ["--output_dir", str(output_dir)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert not output_dir.exists()
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_exits_2_with_one_line(case, tmp_path, capsys):
    kwargs = case.build(tmp_path)
    line = _expect_exit_2(_as_argv(kwargs), capsys, tmp_path / "out")
    for expected in case.expect:
        assert expected in line


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--bins", "0,12,8,np.inf", "strictly increasing"),
        ("--bins", "1,8,np.inf", "start at 0"),
        ("--bins", "0,8,12", "end at np.inf"),
        ("--bins", "0,eight,np.inf", "not a number"),
        ("--all_data_ci_level", "100", "--all_data_ci_level"),
        ("--topn_ci_level", "0", "--topn_ci_level"),
        ("--n_bootstraps", "0", "--n_bootstraps"),
        ("--top_n", "-5", "--top_n"),
        ("--max_iter", "0", "--max_iter"),
        ("--n_bootstraps", "many", "--n_bootstraps"),
        ("--engine", "turbo", "--engine"),
        ("--n_bootstraps", "2000000", "at most"),
        ("--max_iter", str(10**30), "at most"),
        ("--log-level", "LOUD", "--log-level"),
    ],
)
def test_bad_option_exits_2_with_one_line(option, value, expected, tmp_path, capsys):
    response, predictors = valid_files(tmp_path)
    argv = [
        COMMAND,
        "--response_file",
        str(response),
        "--predictors_file",
        str(predictors),
        "--perturbed_tf",
        PERTURBED_TF,
        option,
        value,
    ]
    line = _expect_exit_2(argv, capsys, tmp_path / "out")
    assert expected in line


@pytest.mark.parametrize(
    "options, expected",
    [
        # 6 top-N rows in bins of 3 and 3.
        (["--top_n", "6", "--bins", "0,3,np.inf"], ("top-N stage (6 rows, --top_n 6", "(0, 3]")),
        # 39 rows (the pTF's own is left out) in 14 bins of at most 3.
        (
            ["--bins", ",".join(str(edge) for edge in range(0, 40, 3)) + ",np.inf"],
            ("all-data stage (39 rows", "(0, 3]"),
        ),
    ],
)
def test_infeasible_stratification_exits_2_before_any_fit(options, expected, tmp_path, capsys):
    response, predictors = valid_files(tmp_path)
    argv = [COMMAND, "--response_file", str(response), "--predictors_file", str(predictors),
            "--perturbed_tf", PERTURBED_TF, "--n_bootstraps", "10", *options]  # fmt: skip
    line = _expect_exit_2(argv, capsys, tmp_path / "out")
    for part in (*expected, "holds 3", "every bin holds fewer than 4 rows", PERTURBED_TF):
        assert part in line


def test_bad_input_from_a_real_process_has_no_traceback(tmp_path):
    response, predictors = valid_files(tmp_path)
    done = run_cli(
        "--response_file",
        str(response),
        "--predictors_file",
        str(predictors),
        "--perturbed_tf",
        "tf03",
        "--output_dir",
        str(tmp_path / "out"),
        "--n_cpus",
        "1",
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "TF03" in done.stderr  # the close match is suggested
    assert not (tmp_path / "out").exists()


def test_help_groups_options_like_the_document():
    done = subprocess.run(
        [sys.executable, "-m", "tfbp_dask", COMMAND, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
    )
    assert done.returncode == 0
    for section in (
        "Input Files",
        "Input Control",
        "Data Processing",
        "Feature Engineering",
        "Binning Options",
        "Model Parameters",
        "Output Control",
        "System Options",
    ):
        assert section in done.stdout
    for flag in (
        "--response_file",
        "--squared_pTF",
        "--exclude_interactor_variables",
        "--stage4_topn",
        "--log-level",
        "--engine",
    ):
        assert flag in done.stdout


def test_a_batch_where_no_tf_can_run_is_bad_input(tmp_path, capsys):
    response, predictors = valid_files(tmp_path)
    argv = [COMMAND, "--response_file", str(response), "--predictors_file", str(predictors),
            "--perturbed_tf", "NOPE1,NOPE2"]  # fmt: skip
    line = _expect_exit_2(argv, capsys, tmp_path / "out")
    assert "NOPE1" in line


def test_multi_line_errors_are_printed_on_one_line(monkeypatch, tmp_path, capsys):
    import tfbp_dask.api

    def explode(*args, **kwargs):
        raise ValueError("first line\nsecond line")

    monkeypatch.setattr(tfbp_dask.api, "_connect", explode)
    response, predictors = valid_files(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main([COMMAND, "--response_file", str(response), "--predictors_file", str(predictors),
              "--perturbed_tf", PERTURBED_TF, "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert stop.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["tfbp-dask: error: run failed: ValueError: first line second line"]


def test_option_defaults_are_the_library_defaults(monkeypatch, tmp_path):
    import tfbp_dask.api

    seen = []

    def record(config, progress=None):
        seen.append(config)
        return SimpleNamespace(outcome="completed", run_dir=tmp_path)

    monkeypatch.setattr(tfbp_dask.api, "run", record)
    response, predictors = valid_files(tmp_path)
    main([COMMAND, "--response_file", str(response), "--predictors_file", str(predictors),
          "--perturbed_tf", PERTURBED_TF])  # fmt: skip
    # Only the required options given: every other value is WorkflowConfig's default.
    # (and the command line as typed, which only the reproducibility record reads).
    expected = WorkflowConfig(response, predictors, perturbed_tf=PERTURBED_TF)
    assert [dataclasses.replace(config, command_line=None) for config in seen] == [expected]
    assert seen[0].command_line.split()[:2] == ["tfbp-dask", COMMAND]


def test_help_lists_every_option_once_with_its_default_and_flags_without_a_placeholder(capsys):
    import dataclasses as dc

    from tfbp_dask.cli_options import COMMAND_OPTIONS, cli_fields

    main([COMMAND, "--help"])
    text = capsys.readouterr().out
    assert "<bool>" not in text
    # The option column: the first word of a row (after the required mark).
    rows = [line[1:6].lstrip(" *") + line[6:] for line in text.splitlines()]
    words = [row.split(" ")[0] for row in rows]
    # Every field of WorkflowConfig the command line shows, and the command's own options.
    for name in [field.name for field in cli_fields()] + list(COMMAND_OPTIONS):
        flag = {
            "log_level": "--log-level,--log_level",
            "log_handler": "--log-handler,--log_handler",
        }
        flag = flag.get(name, f"--{name}")
        assert words.count(flag) == 1, flag
    defaults = {f.name: f.default for f in dc.fields(WorkflowConfig)}
    assert f"[default: {defaults['n_bootstraps']}]" in text
    assert "[default: (0,8,12,np.inf;" in text
