"""A scheduler that speaks only mutual TLS: runs with the cluster's certificates, refusals without.

Real ``dask scheduler`` / ``dask worker`` processes on 127.0.0.1 with
certificates from ``deploy/make_certs.py`` (a throwaway CA per session).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import dataset_config, load_deploy_script, load_make_certs
from distributed import Client

from tfbp_dask import run
from tfbp_dask.config import OptionError
from tfbp_dask.errors import ClusterUnavailable, InputError
from tfbp_dask.tls import ClientFiles

COMMAND = "linear_perturbation_binding_modeling"
# Refusals must come at once, not when this runs out.
PATIENT_TIMEOUT = 60.0


def _cli(dataset, output_dir: Path, *args: str, env: dict | None = None):
    _, response, predictors = dataset
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable, "-m", "tfbp_dask", COMMAND,
            "--response_file", str(response), "--predictors_file", str(predictors),
            "--perturbed_tf", "TF01", "--n_bootstraps", "12", "--top_n", "120",
            "--random_state", "5", "--output_dir", str(output_dir), *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return done, time.monotonic() - started


def _client_files(files: dict[str, Path]) -> list[str]:
    return ["--tls_ca_file", str(files["ca"]), "--tls_cert", str(files["client_cert"])] + [
        "--tls_key", str(files["client_key"])
    ]  # fmt: skip


def _tables(run_dir: Path) -> dict[str, bytes]:
    names = [
        f"{stage}/{name}"
        for stage in ("all_data_results", "topn_results")
        for name in ("bootstrap_coefficients.csv", "confidence_intervals.csv")
    ] + ["interactor_significance/significance_results.csv"]
    return {name: (run_dir / name).read_bytes() for name in names}


def _refused(done: subprocess.CompletedProcess, elapsed: float, output_dir: Path) -> str:
    """The one stderr line of a refusal (exit 2, quick, nothing written)."""
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tfbp-dask: error: ") and "Traceback" not in done.stderr
    assert elapsed < PATIENT_TIMEOUT
    assert not output_dir.exists()
    return lines[0]


def test_tls_run_gives_the_embedded_numbers(
    tiny_dataset, tmp_path, tls_cluster, certificates, client_two_workers
):
    embedded = run(
        dataset_config(tiny_dataset, tmp_path / "embedded", n_bootstraps=12, random_state=5),
        client=client_two_workers,
    )
    out = tmp_path / "tls"
    done, _ = _cli(
        tiny_dataset, out, "--scheduler_address", tls_cluster.address, *_client_files(certificates)
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = out.glob("TF01_*")
    assert _tables(run_dir) == _tables(embedded.run_dir)
    summary = json.loads((run_dir / "input_data" / "data_summary.json").read_text())
    assert summary["cluster"]["address"] == tls_cluster.address
    assert summary["options"]["tls_cert"] == str(certificates["client_cert"])


def test_tls_files_from_the_dask_configuration(tiny_dataset, tmp_path, tls_cluster, certificates):
    """No --tls_* option: the DASK_DISTRIBUTED__COMM__TLS__* variables are used."""
    env = {
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(certificates["ca"]),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(certificates["client_cert"]),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(certificates["client_key"]),
    }
    out = tmp_path / "out"
    done, _ = _cli(tiny_dataset, out, "--scheduler_address", tls_cluster.address, env=env)
    assert done.returncode == 0, done.stderr
    assert len(list(out.glob("TF01_*"))) == 1


def test_api_run_with_a_security_object(tiny_dataset, tmp_path, tls_cluster):
    config = dataset_config(
        tiny_dataset, tmp_path, n_bootstraps=12, random_state=5, connect_timeout=PATIENT_TIMEOUT
    )
    config = replace(config, scheduler_address=tls_cluster.address)
    outcome = run(config, security=tls_cluster.security())
    assert outcome.result.all_data is not None
    with pytest.raises(ClusterUnavailable, match="needs TLS certificates"):
        run(replace(config, output_dir=tmp_path / "refused"))  # no certificate at all
    assert not (tmp_path / "refused").exists()


def test_client_without_its_certificate_is_refused(
    tiny_dataset, tmp_path, tls_cluster, certificates
):
    out = tmp_path / "out"
    done, elapsed = _cli(
        tiny_dataset, out, "--scheduler_address", tls_cluster.address,
        "--tls_ca_file", str(certificates["ca"]), "--connect_timeout", str(PATIENT_TIMEOUT),
    )  # fmt: skip
    line = _refused(done, elapsed, out)
    assert tls_cluster.address in line and "--tls_cert" in line


def test_client_certificate_of_another_ca_is_refused_by_the_scheduler(
    tiny_dataset, tmp_path, tls_cluster, certificates, other_certificates
):
    out = tmp_path / "out"
    files = {**other_certificates, "ca": certificates["ca"]}  # trusts the scheduler, not trusted
    done, elapsed = _cli(
        tiny_dataset, out, "--scheduler_address", tls_cluster.address, *_client_files(files),
        "--connect_timeout", str(PATIENT_TIMEOUT),
    )  # fmt: skip
    line = _refused(done, elapsed, out)
    assert "refused this client's certificate" in line
    assert str(other_certificates["client_cert"]) in line


def test_scheduler_certificate_of_another_ca_is_refused_by_the_client(
    tiny_dataset, tmp_path, tls_cluster, other_certificates
):
    out = tmp_path / "out"
    done, elapsed = _cli(
        tiny_dataset, out, "--scheduler_address", tls_cluster.address,
        *_client_files(other_certificates), "--connect_timeout", str(PATIENT_TIMEOUT),
    )  # fmt: skip
    line = _refused(done, elapsed, out)
    assert "presented a certificate" in line and str(other_certificates["ca"]) in line


def test_tcp_address_of_a_tls_scheduler_is_refused(tiny_dataset, tmp_path, tls_cluster):
    tcp_address = tls_cluster.address.replace("tls://", "tcp://")
    out = tmp_path / "out"
    done, elapsed = _cli(
        tiny_dataset, out, "--scheduler_address", tcp_address,
        "--connect_timeout", str(PATIENT_TIMEOUT),
    )  # fmt: skip
    line = _refused(done, elapsed, out)
    assert f"{tcp_address} requires TLS" in line and tls_cluster.address in line


def test_missing_certificate_file_is_refused(tiny_dataset, tmp_path, tls_cluster, certificates):
    out = tmp_path / "out"
    missing = tmp_path / "no_such_client.pem"
    files = {**certificates, "client_cert": missing}
    done, elapsed = _cli(
        tiny_dataset, out, "--scheduler_address", tls_cluster.address, *_client_files(files)
    )
    line = _refused(done, elapsed, out)
    assert str(missing) in line and "--tls_cert" in line and "cannot read it" in line


def test_key_of_another_certificate_is_refused_before_connecting(
    tiny_dataset, tmp_path, certificates, other_certificates
):
    config = dataset_config(
        tiny_dataset, tmp_path / "out", scheduler_address="tls://127.0.0.1:9",
        tls_ca_file=certificates["ca"], tls_cert=certificates["client_cert"],
        tls_key=other_certificates["client_key"],
    )  # fmt: skip
    with pytest.raises(InputError, match="cannot be used") as refused:
        run(config)
    assert str(other_certificates["client_key"]) in str(refused.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("address", "files", "message"),
    [
        (None, {"tls_ca_file": Path("ca.pem")}, "need --scheduler_address tls://"),
        ("tcp://127.0.0.1:8786", {"tls_cert": Path("c.pem")}, "must be tls://"),
        ("tls://127.0.0.1:8786", {"tls_key": Path("k.pem")}, "--tls_key needs --tls_cert"),
    ],
)
def test_tls_options_are_checked_with_the_address(tiny_dataset, tmp_path, address, files, message):
    config = dataset_config(tiny_dataset, tmp_path, scheduler_address=address, **files)
    with pytest.raises(OptionError, match=message):
        config.validate()


def test_make_certs_writes_private_keys_and_never_overwrites(tmp_path):
    make_certs = load_make_certs()
    paths = make_certs.make_certificates(tmp_path / "tls", days=1)
    assert {"ca", "ca_key", "client_cert", "client_key", "worker_cert", "scheduler_key"} <= set(
        paths
    )
    for name, path in paths.items():
        mode = path.stat().st_mode & 0o777
        assert mode == (0o600 if name.endswith("key") else 0o644), name
    before = paths["ca"].read_bytes()
    assert make_certs.main([str(tmp_path / "tls")]) == 2
    assert paths["ca"].read_bytes() == before
    with pytest.raises(InputError, match="cannot read it"):
        ClientFiles(str(paths["ca"]), str(tmp_path / "absent.pem"), None).check("tls://h:1")


def test_slurm_driver_security_joins_a_tls_cluster(tls_cluster, certificates):
    """The driver's credentials (from a make_certs.py directory) are accepted by the cluster."""
    driver = load_deploy_script("slurm/run_batch.py")
    args = driver.parse_args(["--response_file", "r", "--predictors_file", "p"] + [
        "--perturbed_tfs_file", "t", "--tls_dir", str(certificates["ca"].parent)
    ])  # fmt: skip
    with Client(tls_cluster.address, security=driver.tls_security(args), timeout="20s") as client:
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
