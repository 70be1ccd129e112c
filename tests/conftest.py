"""Shared fixtures: generated data sets (with planted interactions) and clusters.

Clusters are made here and closed here; they listen on 127.0.0.1 only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from tfbp_dask.datagen import make_dataset, write_dataset


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory):
    """1000 genes x 25 TFs, two planted partners per TF, on disk."""
    data = make_dataset(n_genes=1000, n_tfs=25, seed=7)
    directory = tmp_path_factory.mktemp("small_dataset")
    response, predictors = write_dataset(data, directory)
    return data, response, predictors


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory):
    """200 genes x 8 TFs: quick runs of the whole workflow."""
    data = make_dataset(n_genes=200, n_tfs=8, noise=0.5, seed=3)
    directory = tmp_path_factory.mktemp("tiny_dataset")
    response, predictors = write_dataset(data, directory)
    return data, response, predictors


def _threaded_client(n_workers: int):
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=False,
        dashboard_address=":0",
    )
    client = Client(cluster)
    return cluster, client


@pytest.fixture(scope="module")
def client_one_worker():
    cluster, client = _threaded_client(1)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def client_two_workers():
    cluster, client = _threaded_client(2)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def output_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"
