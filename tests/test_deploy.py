"""The deployment files: the compose file, the worker image and the SLURM driver.

Read only (no Docker, SLURM or network): the compose file is parsed as YAML,
the Dockerfile and the driver are checked as text and compiled Python.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import load_deploy_script, load_make_certs

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SLURM_DRIVER = ROOT / "deploy" / "slurm" / "run_batch.py"
SBATCH = ROOT / "deploy" / "slurm" / "submit_driver.sbatch"


@pytest.fixture(scope="module")
def services() -> dict:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(compose, dict) and isinstance(compose.get("services"), dict)
    return compose["services"]


def _command(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _option(command: list[str], name: str) -> str:
    """The value of ``--name value`` or ``--name=value`` in a command."""
    for index, part in enumerate(command):
        if part == name:
            return command[index + 1]
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    raise AssertionError(f"{name} missing from {command}")


def _published(service: dict) -> set[str]:
    """Container ports published by a service (short or long port syntax)."""
    ports = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(str(entry["target"]))
        else:
            ports.add(str(entry).split("/")[0].rsplit(":", 1)[-1])
    return ports


def _dockerfile_lines() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_compose_has_scheduler_and_worker(services):
    assert {"scheduler", "worker"} <= set(services)


def test_scheduler_command_and_ports(services):
    scheduler = services["scheduler"]
    command = _command(scheduler)
    assert command[:2] == ["dask", "scheduler"]
    assert _option(command, "--port") == "8786"
    assert _option(command, "--protocol") == "tls"
    assert _option(command, "--dashboard-address").endswith(":8787")
    assert {"8786", "8787"} <= _published(scheduler)


def _host_default(entry: str) -> str:
    """The host a short-syntax port entry publishes on when no variable is set."""
    host = entry.rsplit(":", 2)[0]
    match = re.fullmatch(r"\$\{\w+:-([^}]*)\}", host)
    return match.group(1) if match else host


def test_ports_are_published_on_loopback_unless_asked(services):
    ports = {str(entry).rsplit(":", 1)[-1]: str(entry) for entry in services["scheduler"]["ports"]}
    assert _host_default(ports["8787"]) == "127.0.0.1"  # the dashboard has no login
    assert _host_default(ports["8786"]) == "127.0.0.1"
    assert "TFBP_DASHBOARD_BIND" in ports["8787"] and "TFBP_BIND" in ports["8786"]


@pytest.mark.parametrize(
    ("name", "role", "flags"),
    [
        ("scheduler", "scheduler", ("--tls-ca-file", "--tls-cert", "--tls-key")),
        ("worker", "worker", ("--tls-ca-file", "--tls-cert", "--tls-key")),
        ("client", "client", ("--tls_ca_file", "--tls_cert", "--tls_key")),
    ],
)
def test_services_use_the_certificates_make_certs_writes(services, tmp_path, name, role, flags):
    written = load_make_certs().make_certificates(tmp_path, days=1)
    command = _command(services[name])
    ca, cert, key = (_option(command, flag) for flag in flags)
    assert Path(ca).name == written["ca"].name
    assert Path(cert).name == written[f"{role}_cert"].name
    assert Path(key).name == written[f"{role}_key"].name
    mounts = [str(volume) for volume in services[name]["volumes"]]
    assert any(m.endswith(":" + str(Path(ca).parent) + ":ro") for m in mounts), mounts


def test_worker_command(services):
    worker = services["worker"]
    command = _command(worker)
    assert command[:2] == ["dask", "worker"]
    assert "tls://scheduler:8786" in command
    assert _option(command, "--nthreads") == "1"
    assert _option(command, "--nworkers") == "1"
    assert "scheduler" in worker["depends_on"]
    replicas = str(worker["deploy"]["replicas"])
    assert replicas.isdigit() or replicas.startswith("${")


@pytest.mark.parametrize("name", ["scheduler", "worker"])
def test_services_build_from_the_dockerfile(services, name):
    build = services[name]["build"]
    assert (ROOT / build["context"]).resolve() == ROOT
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert any(str(volume).endswith(":/data") for volume in services[name]["volumes"])


def test_client_service_is_optional_and_targets_the_scheduler(services):
    client = services["client"]
    assert client.get("profiles") == ["client"]
    command = _command(client)
    assert _option(command, "--scheduler_address") == "tls://scheduler:8786"
    for name in ("--response_file", "--predictors_file"):
        assert Path(_option(command, name)).name in {"response.csv", "predictors.csv"}
    assert (ROOT / "examples" / "response.csv").is_file()


def test_dockerfile_installs_the_package():
    lines = _dockerfile_lines()
    assert lines[0].startswith("FROM python:3.11")
    copies = [line for line in lines if line.startswith("COPY ")]
    assert any("tfbp_dask" in line for line in copies)
    assert any("pyproject.toml" in line for line in copies)
    # setup.py compiles the kernels into the image; NUMBA_CACHE_DIR would hide them.
    assert any("setup.py" in line for line in copies)
    runs = " ".join(line for line in lines if line.startswith("RUN "))
    assert "pip install" in runs
    words = shlex.split(runs.replace("&&", " "))
    assert "." in words[words.index("install") :]
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    assert "WORKDIR /data" in lines
    env = " ".join(line for line in lines if line.startswith("ENV "))
    for variable in ("OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1", "MKL_NUM_THREADS=1"):
        assert variable in env
    assert "NUMBA_CACHE_DIR" not in env


def test_slurm_driver_compiles_and_uses_jobqueue():
    source = SLURM_DRIVER.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(SLURM_DRIVER))
    compile(tree, str(SLURM_DRIVER), "exec")
    assert "SLURMCluster" in source
    assert "run_many" in source
    guards = [
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
        and isinstance(node.test.comparators[0], ast.Constant)
        and node.test.comparators[0].value == "__main__"
    ]
    assert guards, "run_batch.py needs an if __name__ == '__main__': guard"


def test_sbatch_script_runs_the_driver():
    text = SBATCH.read_text(encoding="utf-8")
    assert text.startswith("#!")
    assert "#SBATCH" in text
    assert "run_batch.py" in text


def test_slurm_driver_defaults_are_the_commands(monkeypatch):
    from tfbp_dask import WorkflowConfig

    driver = _driver()
    args = driver.parse_args(["--response_file", "r", "--predictors_file", "p"] + [
        "--perturbed_tfs_file", "t"
    ])  # fmt: skip
    (config,) = driver.build_configs(args, ["TF1"])
    defaults = WorkflowConfig(Path("r"), Path("p"), "TF1")
    for name in ("n_bootstraps", "top_n", "all_data_ci_level", "topn_ci_level", "max_iter",
                 "engine", "chunk_size", "random_state", "output_dir",
                 "no_input_parquet"):  # fmt: skip
        assert getattr(config, name) == getattr(defaults, name), name
    args = driver.parse_args(["--response_file", "r", "--predictors_file", "p"] + [
        "--perturbed_tfs_file", "t", "--no_input_parquet"
    ])  # fmt: skip
    (config,) = driver.build_configs(args, ["TF1"])
    assert config.no_input_parquet


def _driver():
    return load_deploy_script("slurm/run_batch.py")


def test_slurm_driver_refuses_to_run_without_tls(tmp_path, capsys):
    tfs = tmp_path / "tfs.txt"
    tfs.write_text("TF01\n")
    common = ["--response_file", "r", "--predictors_file", "p", "--perturbed_tfs_file", str(tfs)]
    assert _driver().main(common) == 2  # before any cluster is made
    assert "give --tls_dir" in capsys.readouterr().err
    assert _driver().main([*common, "--tls_dir", str(tmp_path / "none")]) == 2
    error = capsys.readouterr().err
    assert str(tmp_path / "none" / "ca.pem") in error and "cannot read it" in error


def test_slurm_driver_security_covers_every_role(certificates):
    driver = _driver()
    args = driver.parse_args(["--response_file", "r", "--predictors_file", "p"] + [
        "--perturbed_tfs_file", "t", "--tls_dir", str(certificates["ca"].parent)
    ])  # fmt: skip
    security = driver.tls_security(args)
    assert security.require_encryption
    for role in ("scheduler", "worker", "client"):
        tls = security.get_tls_config_for_role(role)
        assert tls["ca_file"] == str(certificates["ca"])
        assert (tls["cert"], tls["key"]) == (
            str(certificates[f"{role}_cert"]), str(certificates[f"{role}_key"])
        )  # fmt: skip
    assert args.dashboard_address.startswith("127.0.0.1:")
