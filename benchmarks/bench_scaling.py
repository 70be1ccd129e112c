"""How many workers can one batch client feed, in how much memory, writing how much?

Runs a batch as a user on a cluster does: an external ``dask scheduler``, N
``dask worker --nthreads 1`` processes and a fresh
``python -m tfbp_dask linear_perturbation_binding_modeling --scheduler_address …``
client, all on 127.0.0.1, on yeast-like data (``datagen.make_dataset(6000, 150)``,
every TF a pTF). Before the timed batch a one-TF warm-up batch lets every worker
compile the engine's kernels.

Reports, for the timed batch:

- wall seconds of the client process;
- client CPU seconds per TF (user + system of the whole client process,
  start-up included, divided by the TFs run);
- worker CPU seconds per TF (user + system of the worker processes and their
  nannies during the batch, divided by the TFs run);
- the *client ceiling*: worker CPU per TF / client CPU per TF, the number of
  workers one client keeps busy; also without the client's start-up (its CPU
  until the first run directory appears: imports, reading the inputs, joining
  the cluster), which a batch pays once whatever its size;
- the client's peak RSS;
- bytes written per TF (every file under the output directory, divided by the
  TFs run; a file hard-linked into several run directories counts once, as on disk);
- the fits' own CPU seconds per TF (``fit_cpu_seconds`` of every stage in the run
  directories' ``data_summary.json``: the engine calls' thread CPU time) and the
  workers' CPU per TF over it: how much of the workers' time goes to the fits.

``--code DIR`` puts another checkout of the package first on ``PYTHONPATH`` for
the scheduler, the workers and the client (to measure an older commit against
the same data). ``--profile FILE`` records the client with ``py-spy`` (every
thread, while it holds the GIL) into a speedscope/flamegraph file. ``--no_input_parquet``
is passed on to the batch (bytes per TF without the twins of ``input_data/``), and so
are ``--batch_tasks`` and ``--batch_figures``.

Run from the repository root::

    python benchmarks/bench_scaling.py --n_tfs_run 50 --n_bootstraps 200
    python benchmarks/bench_scaling.py --n_tfs_run 20 --n_bootstraps 1000
    python benchmarks/bench_scaling.py --n_tfs_run all --n_bootstraps 200
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from tfbp_dask.datagen import make_dataset, write_dataset

COMMAND = "linear_perturbation_binding_modeling"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _tree(root: subprocess.Popen) -> list[psutil.Process]:
    parent = psutil.Process(root.pid)
    return [parent, *parent.children(recursive=True)]


def _wait_for_workers(address: str, n: int, env: dict[str, str]) -> None:
    probe = (
        "from distributed import Client\n"
        f"with Client({address!r}, timeout='60s') as c:\n"
        f"    c.wait_for_workers({n}, timeout=120)\n"
    )
    subprocess.run([sys.executable, "-c", probe], env=env, check=True, cwd=tempfile.gettempdir())


def _client(
    argv: list[str], env: dict[str, str], profile: Path | None, log: Path, out: Path
) -> dict[str, float]:
    """Run one client process; its wall, CPU seconds and peak RSS (from ``wait4``).

    Also the CPU seconds it had used when its first run directory appeared in
    ``out``: start-up (imports, reading the inputs, joining the cluster), paid
    once per batch whatever its size.
    """
    command = [sys.executable, "-m", "tfbp_dask", COMMAND, *argv]
    if profile is not None:
        command = ["py-spy", "record", "--threads", "--gil", "--format", "speedscope",
                   "--rate", "50", "-o", str(profile), "--", *command]  # fmt: skip
    started = time.perf_counter()
    with open(log, "ab") as console:
        process = subprocess.Popen(command, env=env, stdout=console, stderr=console, cwd=log.parent)
    watched = psutil.Process(process.pid)
    startup_cpu = None
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if startup_cpu is None and out.is_dir() and any(out.glob("TF*")):
            startup_cpu = _cpu_seconds([watched, *watched.children(recursive=True)])
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"client exited with {process.returncode}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "startup_cpu": startup_cpu or 0.0,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # kB on Linux
    }


def _imported_from(env: dict[str, str], cwd: Path) -> str:
    """Where the processes import tfbp_dask from (to be sure ``--code`` is what is measured)."""
    probe = "import tfbp_dask; print(tfbp_dask.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=cwd, capture_output=True, text=True
    )
    return str(Path(found.stdout.strip()).parent)


def _bytes_under(directory: Path) -> int:
    """Bytes on disk under ``directory``: a hard-linked file counts once."""
    sizes = {}
    for path in directory.rglob("*"):
        if path.is_file():
            stat = path.stat()
            sizes[(stat.st_dev, stat.st_ino)] = stat.st_size
    return sum(sizes.values())


def _fit_cpu_seconds(out: Path) -> float:
    """The fits' own CPU seconds, summed over every run directory's stages."""
    total = 0.0
    for summary in out.glob("*/input_data/data_summary.json"):
        stages = json.loads(summary.read_text())["stages"].values()
        total += sum(stage.get("fit_cpu_seconds", 0.0) for stage in stages)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_tfs_run", default="50", help="a number, or 'all' (150)")
    parser.add_argument("--n_bootstraps", type=int, default=200)
    parser.add_argument("--n_workers", type=int, default=2)
    parser.add_argument("--code", type=Path, help="checkout to measure (default: this one)")
    parser.add_argument("--profile", type=Path, help="py-spy profile of the client")
    parser.add_argument("--keep", type=Path, help="keep the outputs under this directory")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--no_input_parquet", action="store_true", help="pass --no_input_parquet to the batch"
    )
    parser.add_argument("--batch_tasks", help="pass --batch_tasks to the batch")
    parser.add_argument(
        "--batch_figures", action="store_true", help="pass --batch_figures to the batch"
    )
    args = parser.parse_args()

    env = dict(os.environ)
    if args.code is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(args.code.resolve()), *filter(None, [env.get("PYTHONPATH")])]
        )
    scratch = Path(tempfile.mkdtemp(prefix="tfbp-scaling-")) if args.keep is None else args.keep
    data = make_dataset(n_genes=6000, n_tfs=150, seed=1)
    response, predictors = write_dataset(data, scratch / "data")
    all_tfs = list(data.response.columns[1:])
    tfs = all_tfs if args.n_tfs_run == "all" else all_tfs[: int(args.n_tfs_run)]
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    # Run every process from the scratch directory: ``python -m`` puts the working
    # directory first on sys.path, which must not shadow ``--code``.
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": scratch}
    scheduler = subprocess.Popen(
        ["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        env=env,
        **quiet,
    )
    workers = [
        subprocess.Popen(
            [
                "dask",
                "worker",
                address,
                "--nthreads",
                "1",
                "--host",
                "127.0.0.1",
                "--no-dashboard",
                "--memory-limit",
                "0",
            ],  # fmt: skip
            env=env,
            **quiet,
        )
        for _ in range(args.n_workers)
    ]
    try:
        _wait_for_workers(address, args.n_workers, env)
        common = ["--response_file", str(response), "--predictors_file", str(predictors),
                  "--random_state", "3", "--scheduler_address", address]  # fmt: skip
        warm = [*common, "--perturbed_tf", f"{tfs[0]},{tfs[1]}", "--n_bootstraps", "20",
                "--output_dir", str(scratch / "warmup")]  # fmt: skip
        _client(warm, env, None, scratch / "client.log", scratch / "warmup")
        worker_processes = [p for worker in workers for p in _tree(worker)]
        worker_cpu_before = _cpu_seconds(worker_processes)
        selection = ["--perturbed_tf", "all"] if args.n_tfs_run == "all" else [
            "--perturbed_tf", ",".join(tfs)]  # fmt: skip
        out = scratch / "out"
        timed = [*common, *selection, "--n_bootstraps", str(args.n_bootstraps),
                 "--output_dir", str(out)]  # fmt: skip
        if args.no_input_parquet:
            timed.append("--no_input_parquet")
        if args.batch_tasks:
            timed += ["--batch_tasks", args.batch_tasks]
        if args.batch_figures:
            timed.append("--batch_figures")
        client = _client(timed, env, args.profile, scratch / "client.log", out)
        worker_cpu = _cpu_seconds(worker_processes) - worker_cpu_before
    finally:
        for process in [*workers, scheduler]:
            process.terminate()
        for process in [*workers, scheduler]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    n = len(tfs)
    batch_cpu = client["cpu"] - client["startup_cpu"]
    batch_tables = sorted(out.glob("batch_*.csv"))
    statuses = batch_tables[-1].read_text().splitlines()[1:] if batch_tables else []
    failed = sum(",failed," in line for line in statuses)
    fit_cpu = _fit_cpu_seconds(out)
    figures = {
        "code": str(args.code or "this checkout"),
        "tfbp_dask": _imported_from(env, scratch),
        "n_tfs": n,
        "n_bootstraps": args.n_bootstraps,
        "n_workers": args.n_workers,
        "failed_tfs": failed,
        "wall_s": round(client["wall"], 1),
        "client_cpu_s_per_tf": round(client["cpu"] / n, 3),
        "worker_cpu_s_per_tf": round(worker_cpu / n, 3),
        "fit_cpu_s_per_tf": round(fit_cpu / n, 3),
        "worker_cpu_over_fit_cpu": round(worker_cpu / fit_cpu, 2) if fit_cpu else None,
        "client_ceiling": round(worker_cpu / client["cpu"], 1),
        "client_startup_cpu_s": round(client["startup_cpu"], 2),
        "client_cpu_s_per_tf_after_startup": round(batch_cpu / n, 3),
        "client_ceiling_after_startup": round(worker_cpu / batch_cpu, 1),
        "client_peak_rss_mb": round(client["peak_rss_mb"]),
        "mb_written_per_tf": round(_bytes_under(out) / n / 1e6, 2),
    }
    print(
        f"{n} TFs x {args.n_bootstraps} bootstraps, 6000 genes x 150 TFs, "
        f"{args.n_workers} workers, code: {figures['code']}"
    )
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    if args.keep is None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
