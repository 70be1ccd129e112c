"""The batch's interaction table and heatmap, checked against each run's own files."""

from __future__ import annotations

import io
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import dataset_config
from PIL import Image

from tfbp_dask import batch_report, plots, run_many, stats
from tfbp_dask.batch_report import Interaction, interactions_table
from tfbp_dask.datagen import make_dataset, write_dataset
from tfbp_dask.design import interaction
from tfbp_dask.interactors import evaluate_interactors

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _config(dataset, output_dir: Path, **options):
    return dataset_config(
        dataset, output_dir, **{**dict(n_bootstraps=16, random_state=11), **options}
    )


# pandas 3 reads floats exactly by default (and deprecates the option); 2.x may be 1 ulp off.
_EXACT_FLOATS = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def _csv(path: Path) -> pd.DataFrame:
    """A CSV read exactly (floats round-trip, ids stay strings)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **_EXACT_FLOATS)


def _batch_files(output_dir: Path) -> tuple[Path, Path, Path]:
    (table,) = output_dir.glob("batch_*_interactions.csv")
    stem = table.with_suffix("")
    return table, stem.with_suffix(".parquet"), stem.with_suffix(".png")


def _assert_png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.load()  # decodes every pixel: a truncated file fails here
        return image.size


@pytest.fixture(scope="module")
def batch(tiny_dataset, tmp_path_factory, client_two_workers):
    """Three TFs; TF02 decides stage 4 with --stage4_lasso."""
    output_dir = tmp_path_factory.mktemp("report") / "batch"
    base = _config(tiny_dataset, output_dir)
    configs = [
        base,
        replace(base, perturbed_tf="TF02", stage4_lasso=True),
        replace(base, perturbed_tf="TF03"),
    ]
    entries = run_many(configs, client=client_two_workers)
    return configs, entries, output_dir


def _expected_rows(run_dir: Path, tf: str) -> list[dict]:
    """Every interaction term stage 1 kept, from the run's own CSVs and numpy alone."""
    rows = []
    stages = {}
    for stage, directory in (("all_data", "all_data_results"), ("topn", "topn_results")):
        if (run_dir / directory).is_dir():
            ci = _csv(run_dir / directory / "confidence_intervals.csv").set_index("term")
            coefs = _csv(run_dir / directory / "bootstrap_coefficients.csv")
            stages[stage] = (ci, coefs)
    significance_path = run_dir / "interactor_significance" / "significance_results.csv"
    significance = (
        _csv(significance_path).set_index("interactor") if significance_path.is_file() else None
    )
    ci, _ = stages["all_data"]
    kept = [term for term in ci.index[ci["significant"]] if term.startswith(f"{tf}:")]
    for term in kept:
        row = {"perturbed_tf": tf, "partner": term.split(":", 1)[1], "term": term}
        for stage, (ci, coefs) in stages.items():
            values = coefs[term].to_numpy(dtype=float)
            row[f"{stage}_ci_level"] = ci.loc[term, "ci_level"]
            row[f"{stage}_lower"] = ci.loc[term, "lower"]
            row[f"{stage}_upper"] = ci.loc[term, "upper"]
            row[f"{stage}_median"] = np.median(values)
            row[f"{stage}_selection_frequency"] = np.count_nonzero(values) / len(values)
            if stage == "topn":
                row["topn_significant"] = bool(ci.loc[term, "significant"])
        if significance is not None and term in significance.index:
            judged = significance.loc[term]
            if "delta_r2" in significance:  # least squares: the better average R² wins
                row["stage4_method"] = "linear"
                row["delta_r2"] = judged["delta_r2"]
                better = judged["avg_r2_interactor"] >= judged["avg_r2_main_effect"]
                row["stage4_verdict"] = "interactor" if better else "main_effect"
            else:  # lasso: whichever keeps a non-zero coefficient, the interaction first
                row["stage4_method"] = "lasso"
                row["delta_r2"] = math.nan
                row["stage4_verdict"] = (
                    "interactor"
                    if judged["coef_interactor"] != 0
                    else "main_effect"
                    if judged["coef_main_effect"] != 0
                    else "neither"
                )
        rows.append(row)
    return rows


def test_rows_equal_each_runs_own_tables(batch):
    configs, entries, output_dir = batch
    table_path, parquet_path, png_path = _batch_files(output_dir)
    table = _csv(table_path)
    assert list(table.columns) == list(Interaction._fields)
    pd.testing.assert_frame_equal(
        pd.read_parquet(parquet_path),
        interactions_table(e for x in entries for e in x.interactions),
    )
    expected = [
        row for entry in entries for row in _expected_rows(entry.run_dir, entry.perturbed_tf)
    ]
    assert table["term"].tolist() == [row["term"] for row in expected]
    assert len(expected) >= 4  # the planted partners are found
    verdicts = set()
    for (_, got), want in zip(table.iterrows(), expected):
        for column, value in want.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(got[column]), (want["term"], column)
            else:
                assert got[column] == value, (want["term"], column, got[column], value)
        for column in set(table.columns) - set(want):  # not reached, or not judged
            assert got[column] in ("", None) or pd.isna(got[column]), (want["term"], column)
        verdicts.add((got["stage4_method"], got["stage4_verdict"]))
    assert ("linear", "interactor") in verdicts and ("lasso", "interactor") in verdicts
    assert [e.perturbed_tf for e in entries] == [c.perturbed_tf for c in configs]
    width, height = _assert_png(png_path)
    assert width >= 750 and height >= 200


def test_a_resumed_batch_lists_the_rows_of_tfs_done_earlier(batch, tmp_path, client_two_workers):
    configs, entries, output_dir = batch
    earlier, _, _ = _batch_files(output_dir)
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(output_dir, resumed_dir, ignore=shutil.ignore_patterns("batch_*"))
    more = [*configs, replace(configs[0], perturbed_tf="TF04", output_dir=resumed_dir)]
    more = [replace(config, output_dir=resumed_dir) for config in more]
    resumed = run_many(more, client=client_two_workers, resume_batch=True)
    assert [e.status for e in resumed][:3] == ["done earlier"] * 3
    assert resumed[3].status != "failed"
    table_path, _, png_path = _batch_files(resumed_dir)
    old_lines = earlier.read_text().splitlines()
    new_lines = table_path.read_text().splitlines()
    # Read back from the run directories, the rows are the same to the last digit.
    assert new_lines[: len(old_lines)] == old_lines
    tf04 = [line for line in new_lines[len(old_lines) :] if line.startswith("TF04,")]
    assert len(tf04) == len(new_lines) - len(old_lines) >= 1
    assert [row["term"] for row in _expected_rows(resumed[3].run_dir, "TF04")] == [
        line.split(",")[2] for line in tf04
    ]
    _assert_png(png_path)


def test_a_batch_that_keeps_nothing_writes_a_header_only_table(tmp_path, client_two_workers):
    noise = make_dataset(n_genes=200, n_tfs=6, effect=0.0, seed=5)
    dataset = (noise, *write_dataset(noise, tmp_path / "data"))
    base = _config(dataset, tmp_path / "out")
    entries = run_many([base, replace(base, perturbed_tf="TF02")], client=client_two_workers)
    assert [e.n_significant_all_data for e in entries] == [0, 0]
    table_path, parquet_path, png_path = _batch_files(tmp_path / "out")
    assert table_path.read_text() == ",".join(Interaction._fields) + "\n"
    parquet = pd.read_parquet(parquet_path)
    assert len(parquet) == 0 and list(parquet.columns) == list(Interaction._fields)
    assert parquet["all_data_lower"].dtype == np.float64
    _assert_png(png_path)


def _synthetic_rows(n_tfs: int, n_partners: int) -> pd.DataFrame:
    rng = np.random.default_rng(n_tfs)
    rows = []
    for i in range(n_tfs):
        for j in sorted({i % n_partners, (i + 1) % n_partners, (i + 7) % n_partners}):
            effect = float(rng.normal())
            tf, partner = f"YAR{i:03d}W", f"YBL{j:03d}C"
            verdict = "interactor" if j % 2 else "main_effect"
            stage = (98.0, effect - 0.1, effect + 0.1, effect, 1.0)
            rows.append(
                Interaction(tf, partner, f"{tf}:{partner}", *stage, *stage, True, "linear",
                            verdict, -0.1)
            )  # fmt: skip
    return interactions_table(rows)


def test_heatmap_gives_every_label_room():
    one = plots.interaction_heatmap(_synthetic_rows(1, 2), "one TF")
    genome = plots.interaction_heatmap(_synthetic_rows(150, 150), "every TF")
    for png in (one, genome):
        assert png[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(genome)) as image:
        width, height = image.size
    # 150 labelled rows and columns need at least 13 pixels each at 100 dpi.
    assert width >= 150 * 13 and height >= 150 * 13


def test_verdicts_follow_stage4s_decision():
    rng = np.random.default_rng(1)
    predictors = pd.DataFrame(rng.gamma(0.6, 1.5, size=(300, 4)), columns=["A", "B", "C", "D"])
    # B acts alone and A acts with D: stage 4 prefers B's main effect and keeps A:D.
    response = predictors["B"] + predictors["A"] * predictors["D"] + 0.5 * rng.normal(size=300)
    terms = [interaction("A", column) for column in ("B", "C", "D")]
    stage4 = evaluate_interactors(predictors, response, "A", terms, (0, 8, 12, np.inf))
    names = [term.name for term in terms]
    importance = stats.feature_importance(rng.normal(size=(20, 3)), names, 98.0)
    partners = {term.name: term.column for term in terms}
    rows = batch_report._rows(
        "A",
        partners,
        batch_report._Stage(importance, 98.0),
        None,
        batch_report._Stage4("linear", stage4.significance, stage4.final_selection),
    )
    significance = stage4.significance
    better = significance["avg_r2_interactor"] >= significance["avg_r2_main_effect"]
    assert [row.stage4_verdict for row in rows] == ["main_effect", "main_effect", "interactor"]
    assert [row.stage4_verdict == "interactor" for row in rows] == better.tolist()
    assert [row.delta_r2 for row in rows] == significance["delta_r2"].tolist()
    assert all(math.isnan(row.topn_lower) and row.topn_significant is None for row in rows)
    # --stage4_lasso with both coefficients zero keeps neither (and has no ΔR²).
    lasso = batch_report._Stage4(
        "lasso",
        pd.DataFrame(
            {
                "interactor": ["A:C"],
                "variant": ["C"],
                "r2_lasso_model": [0.5],
                "coef_interactor": [0.0],
                "coef_main_effect": [0.0],
            }
        ),  # fmt: skip
        pd.DataFrame({"term": ["A:B"], "kind": ["interactor"], "reason": [""]}),
    )
    (row,) = batch_report._rows(
        "A", {"A:C": "C"}, batch_report._Stage(importance, 98.0), None, lasso
    )
    assert (row.stage4_method, row.stage4_verdict) == ("lasso", "neither")
    assert math.isnan(row.delta_r2)
