"""What mutual TLS costs: the same run against an external cluster over tcp:// and tls://.

Starts on 127.0.0.1 a ``dask scheduler`` and ``--n_workers`` single-threaded
``dask worker`` processes, once plain and once with certificates made by
``deploy/make_certs.py`` (a throwaway CA). Against each, runs the same TF as
a fresh ``python -m tfbp_dask`` process (as a user does), alternating
``--repeats`` times after one warm-up run per cluster (the engine compiles its
kernels on the workers); prints the walls, the ratio tls/tcp and whether the
bootstrap coefficients are byte-identical. It also times how long the command
takes to refuse a client of another CA and a tcp:// address for the TLS
scheduler (with ``--connect_timeout 20``).

Run from the repository root (needs ``cryptography``)::

    python benchmarks/bench_tls.py                    # 6000 genes x 150 TFs, 200 bootstraps
    python benchmarks/bench_tls.py --n_bootstraps 100 --repeats 1
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distributed import Client
from distributed.security import Security

from tfbp_dask.datagen import make_dataset, write_dataset

ROOT = Path(__file__).resolve().parents[1]
COEFFICIENTS = Path("all_data_results") / "bootstrap_coefficients.csv"


def _make_certs():
    spec = importlib.util.spec_from_file_location("make_certs", ROOT / "deploy" / "make_certs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """``dask scheduler`` + workers on 127.0.0.1, plain or with mutual TLS."""

    def __init__(self, n_workers: int, certs: dict[str, Path] | None, logs: Path) -> None:
        self.certs = certs
        self.address = f"{'tls' if certs else 'tcp'}://127.0.0.1:{_port()}"
        port = self.address.rsplit(":", 1)[1]
        self.processes = [
            self._start(logs, "scheduler", "--host", "127.0.0.1", "--port", port,
                        "--dashboard-address", "127.0.0.1:0", *self._tls("scheduler"),
                        *(["--protocol", "tls"] if certs else []))
        ]  # fmt: skip
        for _ in range(n_workers):
            self.processes.append(
                self._start(logs, "worker", self.address, "--host", "127.0.0.1", "--nthreads",
                            "1", "--dashboard-address", "127.0.0.1:0", *self._tls("worker"))
            )  # fmt: skip
        security = None
        if certs:
            security = Security(
                tls_ca_file=str(certs["ca"]),
                tls_client_cert=str(certs["client_cert"]),
                tls_client_key=str(certs["client_key"]),
            )
        with Client(self.address, security=security, timeout="60s") as client:
            client.wait_for_workers(n_workers, timeout=120)

    def _tls(self, role: str) -> list[str]:
        if not self.certs:
            return []
        c = self.certs
        return ["--tls-ca-file", str(c["ca"]), "--tls-cert", str(c[f"{role}_cert"]),
                "--tls-key", str(c[f"{role}_key"])]  # fmt: skip

    def client_args(self) -> list[str]:
        if not self.certs:
            return []
        c = self.certs
        return ["--tls_ca_file", str(c["ca"]), "--tls_cert", str(c["client_cert"]),
                "--tls_key", str(c["client_key"])]  # fmt: skip

    @staticmethod
    def _start(logs: Path, *args: str) -> subprocess.Popen:
        with open(logs / f"{args[0]}-{time.monotonic_ns()}.log", "w") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        for process in reversed(self.processes):  # workers before the scheduler
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _command(common: list[str], *extra: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "tfbp_dask", "linear_perturbation_binding_modeling", *common,
         *extra],
        capture_output=True, text=True,
    )  # fmt: skip
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_bootstraps", type=int, default=200)
    parser.add_argument("--n_workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        data = make_dataset(n_genes=6000, n_tfs=150, seed=1)
        response, predictors = write_dataset(data, directory / "data")
        certs = _make_certs().make_certificates(directory / "tls", days=1)
        other = _make_certs().make_certificates(directory / "tls_other", days=1)
        logs = directory / "logs"
        logs.mkdir()
        tf = str(data.response.columns[1])
        common = ["--response_file", str(response), "--predictors_file", str(predictors),
                  "--perturbed_tf", tf, "--random_state", "3"]  # fmt: skip
        clusters = {"tcp": Cluster(args.n_workers, None, logs)}
        clusters["tls"] = Cluster(args.n_workers, certs, logs)
        walls: dict[str, list[float]] = {"tcp": [], "tls": []}
        run_dirs: dict[str, Path] = {}
        try:
            for name, cluster in clusters.items():  # warm-up: compile on the workers
                warm = ["--n_bootstraps", "8", "--output_dir", str(directory / f"warm_{name}")]
                _, done = _command(
                    common, "--scheduler_address", cluster.address, *cluster.client_args(), *warm
                )
                assert done.returncode == 0, done.stderr
            for repeat in range(args.repeats):
                for name, cluster in clusters.items():
                    out = directory / f"{name}_{repeat}"
                    wall, done = _command(
                        common, "--scheduler_address", cluster.address, *cluster.client_args(),
                        "--n_bootstraps", str(args.n_bootstraps), "--output_dir", str(out),
                    )  # fmt: skip
                    assert done.returncode == 0, done.stderr
                    walls[name].append(wall)
                    run_dirs[name] = next(out.glob("*_*"))
            identical = (run_dirs["tcp"] / COEFFICIENTS).read_bytes() == (
                run_dirs["tls"] / COEFFICIENTS
            ).read_bytes()
            tls_address = clusters["tls"].address
            refusals = {
                "client certificate of another CA": [
                    "--scheduler_address", tls_address, "--tls_ca_file", str(certs["ca"]),
                    "--tls_cert", str(other["client_cert"]), "--tls_key", str(other["client_key"]),
                ],
                "tcp:// address of the TLS scheduler": [
                    "--scheduler_address", tls_address.replace("tls://", "tcp://"),
                ],
                "bad option (no connection: start-up only)": ["--n_bootstraps", "0"],
            }  # fmt: skip
            refused = {}
            for label, extra in refusals.items():
                out = ["--output_dir", str(directory / "refused"), "--connect_timeout", "20"]
                wall, done = _command(common, *extra, *out)
                refused[label] = (wall, done.returncode, done.stderr.strip().splitlines()[-1:])
        finally:
            for cluster in clusters.values():
                cluster.stop()

    tcp, tls = min(walls["tcp"]), min(walls["tls"])
    print(f"6000 genes x 150 TFs, {args.n_bootstraps} bootstraps, {args.n_workers} workers")
    print(f"tcp:// walls: {', '.join(f'{w:.1f}' for w in walls['tcp'])} s (best {tcp:.1f})")
    print(f"tls:// walls: {', '.join(f'{w:.1f}' for w in walls['tls'])} s (best {tls:.1f})")
    print(f"tls / tcp (best walls): {tls / tcp:.3f}x")
    print(f"bootstrap coefficients identical: {identical}")
    for label, (wall, status, line) in refused.items():
        print(f"refused, {label}: {wall:.2f} s, exit {status}: {line[0] if line else ''}")


if __name__ == "__main__":
    main()
