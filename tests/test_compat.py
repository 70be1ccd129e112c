"""``--compat tfbpmodeling`` against numbers the published tfbpmodeling tool produced.

What is compared. ``tests/fixtures/compat/`` holds JSON files written by the
published tool (``benchmarks/make_compat_fixtures.py`` made them; see
``docs/compat.md``) for three cases on one synthetic input (300 genes, 8 TFs,
pTF ``TF01``, 100 bootstraps, ``--random_state 7``, ``--top_n 150``): the
default options, ``--iterative_dropout --stabilization_ci_start 80`` and
``--stage4_lasso``. This module runs our command with ``--compat tfbpmodeling``
and the same options on the same input files (the published tool is not
needed) and checks:

* stage 1 (all data) and the top-N stage: the same significant terms, and the
  confidence bounds of *every* term within 1 % of the stage's coefficient scale
  (the largest absolute bound);
* iterative dropout: the same terms kept in every round;
* stage 4: the same verdict for every interactor and ΔR² within 1e-3 (linear),
  or the same zero/non-zero pattern and coefficients within 1 % of their scale
  (``--stage4_lasso``).

Bootstrap draws refer to row positions, so both tools must order rows alike:
the fixture inputs are sorted by id, and the published tool, although it
builds its common-feature list from a Python set, ends up sorted (its
blacklist masking goes through ``pandas.Index.difference``, which sorts); the
fixtures were made with ``PYTHONHASHSEED=0`` and a run with another hash seed
gave byte-identical files. Our default engine (``gram``) is used, not
scikit-learn's: agreement is to solver tolerance, not bit for bit.

Also tested: the compat functions' per-stage settings, that ``--compat none``
keeps the documented settings, and that ``data_summary.json`` records the mode.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_cli

from tfbp_dask import compat
from tfbp_dask.config import DEFAULT_BINS, WorkflowConfig

FIXTURES = Path(__file__).parent / "fixtures" / "compat"
INPUTS = FIXTURES / "inputs"
CASES = ("default", "dropout", "stage4_lasso")
CI_TOLERANCE = 0.01  # of the stage's coefficient scale
DELTA_R2_TOLERANCE = 1e-3


def _published(case: str, name: str):
    return json.loads((FIXTURES / case / name).read_text())


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Our run directory of every case, with --compat tfbpmodeling and the fixture's options."""
    runs = {}
    for case in CASES:
        record = _published(case, "case.json")
        output_dir = tmp_path_factory.mktemp(f"compat-{case}")
        done = run_cli(
            "--response_file",
            str(INPUTS / "response.csv"),
            "--predictors_file",
            str(INPUTS / "predictors.csv"),
            "--perturbed_tf",
            record["perturbed_tf"],
            "--output_dir",
            str(output_dir),
            "--compat",
            "tfbpmodeling",
            "--log-handler",
            "console",
            *record["options"],
        )
        assert done.returncode == 0, done.stderr[-3000:]
        (run_dir,) = [path for path in output_dir.iterdir() if path.is_dir()]
        runs[case] = run_dir
    return runs


def _assert_cis_close(published: dict, mine: dict) -> None:
    (level,) = published
    assert list(mine) == [level]
    assert list(mine[level]) == list(published[level])  # same terms, same order
    scale = max(abs(bound) for bounds in published[level].values() for bound in bounds)
    for term, bounds in published[level].items():
        for theirs, ours_ in zip(bounds, mine[level][term]):
            assert abs(theirs - ours_) <= CI_TOLERANCE * scale, (term, bounds, mine[level][term])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("stage", ["all_data", "topn"])
def test_bootstrap_stages_match_the_published_tool(ours, case, stage):
    run_dir = ours[case]
    name = f"{stage}_result_object/result_obj.json"
    _assert_cis_close(_published(case, name), json.loads((run_dir / name).read_text()))
    level = "98-0" if stage == "all_data" else "90-0"
    significant = f"{stage}_significant_{level}.json"
    theirs = _published(case, significant)
    mine = json.loads((run_dir / significant).read_text())
    assert list(mine) == list(theirs)


def test_dropout_rounds_match_the_published_tool(ours):
    run_dir = ours["dropout"]
    theirs = sorted(p.name for p in (FIXTURES / "dropout").glob("selected_variables_ci_*.txt"))
    assert sorted(p.name for p in run_dir.glob("selected_variables_ci_*.txt")) == theirs
    for name in theirs:
        assert (run_dir / name).read_text() == (FIXTURES / "dropout" / name).read_text()
    summary = json.loads((run_dir / "input_data" / "data_summary.json").read_text())
    levels = {r["ci_level"] for r in summary["stages"]["all_data"]["dropout_rounds"]}
    assert levels == {80.0}  # the published code never raises the level


@pytest.mark.parametrize("case", ["default", "dropout"])
def test_linear_stage4_matches_the_published_tool(ours, case):
    theirs = _published(case, "interactor_vs_main_result.json")
    mine = json.loads((ours[case] / "interactor_vs_main_result.json").read_text())
    assert [row["interactor"] for row in mine] == [row["interactor"] for row in theirs]
    for a, b in zip(theirs, mine):
        assert set(b) == set(a)
        assert b["variant"] == a["variant"]
        assert abs(b["delta_r2"] - a["delta_r2"]) <= DELTA_R2_TOLERANCE
        verdict_theirs = a["avg_r2_interactor"] >= a["avg_r2_main_effect"]
        assert (b["avg_r2_interactor"] >= b["avg_r2_main_effect"]) == verdict_theirs


def test_lasso_stage4_matches_the_published_tool(ours):
    theirs = _published("stage4_lasso", "interactor_vs_main_result.json")
    mine = json.loads((ours["stage4_lasso"] / "interactor_vs_main_result.json").read_text())
    assert [row["interactor"] for row in mine] == [row["interactor"] for row in theirs]
    scale = max(abs(row[key]) for row in theirs for key in ("coef_interactor", "coef_main_effect"))
    for a, b in zip(theirs, mine):
        assert set(b) == set(a)
        for key in ("coef_interactor", "coef_main_effect"):
            assert (b[key] != 0) == (a[key] != 0)
            assert abs(b[key] - a[key]) <= CI_TOLERANCE * scale
        assert abs(b["r2_lasso_model"] - a["r2_lasso_model"]) <= DELTA_R2_TOLERANCE


def test_data_summary_records_the_compat_mode(ours):
    summary = json.loads((ours["default"] / "input_data" / "data_summary.json").read_text())
    assert summary["options"]["compat"] == "tfbpmodeling"
    assert summary["options"]["bins"] == "0,8,64,512,np.inf"  # the published default
    assert summary["compat"]["mode"] == "tfbpmodeling"
    assert summary["compat"]["bins"]["topn"] == "0,8,64,512,np.inf"
    assert summary["compat"]["interactor_rows"] == "top-N"
    assert summary["seeds"] == {"all_data": 7, "topn": 17}
    assert "reproducibility" in summary and "command_line" in summary["reproducibility"]
    assert "--compat tfbpmodeling" in summary["reproducibility"]["command_line"]


def _config(**options) -> WorkflowConfig:
    return WorkflowConfig(
        response_file=INPUTS / "response.csv",
        predictors_file=INPUTS / "predictors.csv",
        perturbed_tf="TF01",
        **options,
    ).validate()


def test_compat_none_keeps_the_documented_settings():
    config = _config(bins=(0.0, 5.0, math.inf), stage4_topn=False, scale_by_std=True)
    assert config.compat == "none"
    assert compat.default_bins("none") == DEFAULT_BINS == (0.0, 8.0, 12.0, math.inf)
    assert compat.topn_bins(config) == (0.0, 5.0, math.inf)
    assert compat.stage4_bins(config) == (0.0, 5.0, math.inf)
    assert compat.topn_seed(config, 0) == 10
    assert [compat.dropout_level(config, r) for r in range(3)] == [50.0, 52.0, 54.0]
    assert not compat.stage4_uses_topn(config)
    assert compat.stage4_scale_by_std(config)
    assert compat.stage4_options(config) == {}
    assert "compat" not in config.numeric_options()  # resuming older runs still matches


def test_compat_tfbpmodeling_settings():
    config = _config(bins=(0.0, 5.0, math.inf), compat="tfbpmodeling", scale_by_std=True)
    assert compat.default_bins("tfbpmodeling") == (0.0, 8.0, 64.0, 512.0, math.inf)
    assert compat.stage1_bins(config) == (0.0, 5.0, math.inf)
    assert compat.topn_bins(config) == (0.0, 8.0, 64.0, 512.0, math.inf)
    assert compat.stage4_bins(config) == (0.0, 5.0, math.inf)
    assert compat.topn_seed(config, 0) == 0 and compat.topn_seed(config, 3) == 13
    assert [compat.dropout_level(config, r) for r in range(3)] == [50.0, 50.0, 50.0]
    assert compat.stage4_uses_topn(config)
    assert not compat.stage4_scale_by_std(config)
    assert compat.stage4_options(config)["lasso_seed"] == config.n_bootstraps - 1
    assert config.numeric_options()["compat"] == "tfbpmodeling"


def test_unknown_compat_mode_is_refused():
    with pytest.raises(ValueError, match="--compat"):
        _config(compat="published")
