"""Shared fixtures: generated data sets (with planted interactions) and clusters.

Clusters are made here and closed here; they listen on 127.0.0.1 only.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster
from distributed.security import Security
from hypothesis import HealthCheck

from tfbp_dask import WorkflowConfig
from tfbp_dask.datagen import make_dataset, write_dataset

# Property-based tests: fixed examples by default, so that a run is reproducible.
# TFBP_FUZZ_SCALE=10 tries ten times as many, freshly drawn ones (a deeper search, by hand).
FUZZ_SCALE = float(os.environ.get("TFBP_FUZZ_SCALE", "1"))
FUZZ_SETTINGS = {
    "deadline": None,
    "derandomize": "TFBP_FUZZ_SCALE" not in os.environ,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


#: The command as a user runs it, in a fresh interpreter.
CLI = [sys.executable, "-m", "tfbp_dask", "linear_perturbation_binding_modeling"]


def cli_env() -> dict[str, str]:
    """The command's environment: warnings are errors in it and its workers, as in the suite.

    A warning a user would see on the path they run (a deprecation, a race for a port)
    then fails the test that meets it instead of scrolling past.
    """
    return {**os.environ, "PYTHONWARNINGS": "error"}


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300):
    """Run the command with ``args`` to its end; its ``CompletedProcess`` (text output)."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, cwd=cwd, env=cli_env(), timeout=timeout
    )


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels, from the IHDR chunk (bytes 16-24 of every PNG)."""
    assert png[:8] == PNG_SIGNATURE
    return struct.unpack(">II", png[16:24])


def fuzz_examples(count: int) -> int:
    """``count`` scaled by ``TFBP_FUZZ_SCALE`` (at least 1)."""
    return max(1, round(count * FUZZ_SCALE))


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RemoteCluster:
    """A real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1."""

    def __init__(
        self,
        directory: Path,
        n_workers: int = 2,
        nanny: bool = True,
        certificates: dict[str, Path] | None = None,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.nanny = nanny
        self.certificates = certificates  # mutual TLS with these (make_certs.py's files)
        port = _free_port()
        self.address = f"{'tls' if certificates else 'tcp'}://127.0.0.1:{port}"
        self.scheduler = self._spawn(
            "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0",
            *self._tls_args("scheduler"),
            *(["--protocol", "tls"] if certificates else []),
        )  # fmt: skip
        self.workers: list[subprocess.Popen] = []
        for _ in range(n_workers):
            self.add_worker()
        self.wait_for_workers(n_workers)

    def _spawn(self, *args: str) -> subprocess.Popen:
        log = open(self.directory / f"{args[0]}-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return process

    def add_worker(self) -> subprocess.Popen:
        args = ["worker", self.address, "--host", "127.0.0.1", "--nthreads", "1"]
        args += ["--dashboard-address", ":0", *self._tls_args("worker")]
        if not self.nanny:
            args.append("--no-nanny")
        worker = self._spawn(*args)
        self.workers.append(worker)
        return worker

    def _tls_args(self, role: str) -> list[str]:
        if not self.certificates:
            return []
        files = self.certificates
        return ["--tls-ca-file", str(files["ca"]), "--tls-cert", str(files[f"{role}_cert"])] + [
            "--tls-key", str(files[f"{role}_key"])
        ]  # fmt: skip

    def security(self) -> Security | None:
        """A client's credentials for this cluster (None without TLS)."""
        if not self.certificates:
            return None
        files = self.certificates
        return Security(
            tls_ca_file=str(files["ca"]),
            tls_client_cert=str(files["client_cert"]),
            tls_client_key=str(files["client_key"]),
            require_encryption=True,
        )

    def wait_for_workers(self, n_workers: int, timeout: float = 60.0) -> None:
        with Client(self.address, timeout="30s", security=self.security()) as client:
            client.wait_for_workers(n_workers, timeout=timeout)

    def stop(self) -> None:
        # Workers first: a worker stopping while its scheduler goes away can hang
        # (seen with TLS and no nanny).
        for group in (self.workers, [self.scheduler]):
            for process in group:
                if process.poll() is None:
                    process.terminate()
            for process in group:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture(scope="module")
def remote_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A scheduler and two single-threaded workers, as separate processes."""
    cluster = RemoteCluster(tmp_path_factory.mktemp("remote_cluster"))
    yield cluster
    cluster.stop()


class ClusterStub:
    """Stands in for what ``api._connect`` returns (a cluster starting in the background):
    nothing starts, and ``result()``, where a run would first use the cluster (its inputs
    read and checked), calls ``on_use``."""

    def __init__(self, on_use) -> None:
        self._on_use = on_use

    def result(self):
        return self._on_use()

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        pass


def load_deploy_script(name: str):
    """A script of ``deploy/`` (e.g. ``make_certs.py``, ``slurm/run_batch.py``) as a module."""
    path = Path(__file__).resolve().parents[1] / "deploy" / name
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_make_certs():
    """``deploy/make_certs.py``, the script users run to make their certificates."""
    return load_deploy_script("make_certs.py")


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA with scheduler, worker and client certificates."""
    return load_make_certs().make_certificates(tmp_path_factory.mktemp("tls"), days=1)


@pytest.fixture(scope="session")
def other_certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Another cluster's CA and certificates (valid, but not ours)."""
    return load_make_certs().make_certificates(tmp_path_factory.mktemp("tls_other"), days=1)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory, certificates):
    """A scheduler and two workers that speak only mutual TLS with ``certificates``."""
    cluster = RemoteCluster(
        tmp_path_factory.mktemp("tls_cluster"), nanny=False, certificates=certificates
    )
    yield cluster
    cluster.stop()


def dataset_config(dataset, output_dir: Path, **options) -> WorkflowConfig:
    """A quick config on a generated data set: TF01, top 120 rows, given overrides."""
    _, response, predictors = dataset
    defaults = dict(
        response_file=response,
        predictors_file=predictors,
        perturbed_tf="TF01",
        top_n=120,
        output_dir=output_dir,
    )
    return WorkflowConfig(**{**defaults, **options})
