"""The SLURM path of deploy/ end to end, on a real one-node SLURM.

Needs a running SLURM whose jobs run on this machine (``--start_slurm`` brings
one up with ``deploy/slurm/local_slurm.sh`` and stops it afterwards; that needs
root). Then:

1. generates a small data set (``datagen.make_dataset``) and a throwaway CA
   (``deploy/make_certs.py``; ``--insecure_tcp`` for plain TCP);
2. runs ``deploy/slurm/run_batch.py`` as a process of its own: its
   ``dask_jobqueue.SLURMCluster`` submits ``--jobs`` single-core jobs with
   ``sbatch``, each running ``dask worker`` over mutual TLS on 127.0.0.1, and
   the driver runs the batch on them;
3. unless ``--no_driver_job``, runs the driver itself as a SLURM job, the
   documented way (``sbatch deploy/slurm/submit_driver.sbatch``, with one core
   and one worker job less so that both fit on a small node);
4. runs the same TFs with the plain command on an embedded cluster
   (``python -m tfbp_dask linear_perturbation_binding_modeling --perturbed_tf
   TF01,TF02,...``, same seed and options);
5. compares every CSV table of every run directory, and the batch's
   interactions table, byte for byte with the local run's.

While the SLURM runs go, ``squeue`` is polled every 0.25 s and every job it
shows is recorded; afterwards ``squeue -h`` must become empty (within 30 s)
and no ``dask worker`` process of the run may be left. Prints the figures and
exits 1 if a table differs, a run failed or a job or worker is left behind.

Run from the repository root (needs dask-jobqueue and cryptography)::

    sudo deploy/slurm/local_slurm.sh start
    python benchmarks/bench_slurm.py
    python benchmarks/bench_slurm.py --start_slurm      # start and stop SLURM itself (root)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tfbp_dask.datagen import make_dataset, tf_names, write_dataset

ROOT = Path(__file__).resolve().parents[1]
LOCAL_SLURM = ROOT / "deploy" / "slurm" / "local_slurm.sh"
DRIVER = ROOT / "deploy" / "slurm" / "run_batch.py"
SBATCH = ROOT / "deploy" / "slurm" / "submit_driver.sbatch"
CONNECTED = re.compile(r"^(\d+) worker\(s\) connected")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n_genes", type=int, default=600)
    parser.add_argument("--n_tfs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=3, help="Seed of the generated data.")
    parser.add_argument("--tfs", type=int, default=4, help="Perturbed TFs of the batch.")
    parser.add_argument("--n_bootstraps", type=int, default=50)
    parser.add_argument("--random_state", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=2, help="Worker jobs of the driver.")
    parser.add_argument("--memory", default="2GiB", help="Memory per worker job.")
    parser.add_argument("--insecure_tcp", action="store_true", help="Plain TCP, no TLS.")
    parser.add_argument("--no_driver_job", action="store_true", help="Skip step 3.")
    parser.add_argument(
        "--start_slurm",
        action="store_true",
        help="Start SLURM with deploy/slurm/local_slurm.sh first and stop it at the end.",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="Keep everything here.")
    return parser.parse_args()


def squeue() -> list[tuple[str, str, str]]:
    """(job id, name, state) of every job squeue shows."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i|%j|%T"], capture_output=True, text=True, check=True
    ).stdout
    return [tuple(line.split("|")) for line in out.splitlines() if line.strip()]


class JobWatch:
    """Polls squeue in a thread; records every job seen, with its states."""

    def __init__(self) -> None:
        self.seen: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                jobs = squeue()
            except subprocess.CalledProcessError:
                jobs = []
            now = time.perf_counter()
            for job_id, name, state in jobs:
                entry = self.seen.setdefault(
                    job_id, {"name": name, "states": [], "first": now, "running": None}
                )
                if state not in entry["states"]:
                    entry["states"].append(state)
                if state == "RUNNING" and entry["running"] is None:
                    entry["running"] = now
            self._stop.wait(0.25)

    def stop(self) -> dict[str, dict]:
        self._stop.set()
        self._thread.join()
        return self.seen


def wait_squeue_empty(timeout: float = 30.0) -> tuple[bool, float]:
    start = time.perf_counter()
    while True:
        left = squeue()
        waited = time.perf_counter() - start
        if not left:
            return True, waited
        if waited > timeout:
            print(f"squeue still shows: {left}")
            return False, waited
        time.sleep(0.25)


def worker_processes(marker: str) -> list[int]:
    """Pids of live processes whose command line contains ``marker`` (the run's cert dir or
    scheduler address) and runs ``dask_worker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "dask_worker" in cmdline and marker in cmdline:
            pids.append(int(entry.name))
    return pids


def report(jobs: dict[str, dict], empty: bool, waited: float, left: list[int]) -> None:
    seen = ", ".join(f"{i} {j['name']} {'>'.join(j['states'])}" for i, j in jobs.items())
    print(f"  jobs seen in squeue: {seen}")
    print(f"  squeue empty afterwards: {'yes' if empty else 'no'} (after {waited:.1f} s); "
          f"dask worker processes left: {len(left)}")  # fmt: skip


def run_driver(command: list[str], env: dict[str, str], log: Path) -> dict:
    """Runs the driver, its output into ``log``; the time until its workers joined."""
    start = time.perf_counter()
    joined = finished = None
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        for line in process.stdout:
            sink.write(line)
            if joined is None and CONNECTED.match(line):
                joined = time.perf_counter() - start
            if line.startswith("summary:"):
                finished = time.perf_counter() - start
        status = process.wait()
    wall = time.perf_counter() - start
    batch = finished - joined if joined is not None and finished is not None else None
    return {"status": status, "wall": wall, "joined": joined, "batch": batch}


def run_driver_job(args, env, work: Path, data: tuple[Path, Path], tfs_file: Path, out: Path):
    """sbatch submit_driver.sbatch (from the repository root); waits for the job to end."""
    env = dict(env)
    env.update(
        TFBP_VENV=str(Path(sys.prefix)),
        TFBP_RESPONSE=str(data[0]),
        TFBP_PREDICTORS=str(data[1]),
        TFBP_TFS=str(tfs_file),
        TFBP_OUTPUT=str(out),
        TFBP_JOBS=str(max(1, args.jobs - 1)),
        TFBP_WORKER_MEMORY=args.memory,
        TFBP_WORKER_WALLTIME="00:30:00",
        TFBP_TLS_DIR="" if args.insecure_tcp else str(work / "tls"),
    )
    output = work / "driver-job-%j.out"
    extra = ["--interface", "lo", "--wait_timeout", "120", "--log_directory",
             str(work / "logs-driver-job"), "--n_bootstraps", str(args.n_bootstraps),
             "--random_state", str(args.random_state)]  # fmt: skip
    if args.insecure_tcp:
        extra.append("--insecure_tcp")
    start = time.perf_counter()
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--cpus-per-task=1", "--mem=2G", "--time=00:30:00",
         f"--output={output}", str(SBATCH), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    job_id = submitted.split(";")[0]
    while any(job[0] == job_id for job in squeue()):
        time.sleep(0.25)
    wall = time.perf_counter() - start
    text = Path(str(output).replace("%j", job_id)).read_text()
    summary = [line for line in text.splitlines() if line.startswith("summary:")]
    joined = [line for line in text.splitlines() if CONNECTED.match(line)]
    ok = bool(summary) and "failed" not in summary[-1] and "completed" in summary[-1]
    return {"job_id": job_id, "wall": wall, "ok": ok, "log": text, "joined": bool(joined)}


def run_local(args, env, data: tuple[Path, Path], tfs: list[str], out: Path) -> dict:
    command = [sys.executable, "-m", "tfbp_dask", "linear_perturbation_binding_modeling",
               "--response_file", str(data[0]), "--predictors_file", str(data[1]),
               "--perturbed_tf", ",".join(tfs), "--n_bootstraps", str(args.n_bootstraps),
               "--random_state", str(args.random_state), "--n_cpus", "2",
               "--output_dir", str(out), "--log-level", "WARNING"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        print(done.stdout[-2000:], done.stderr[-2000:])
    return {"status": done.returncode, "wall": time.perf_counter() - start}


def run_dirs(out: Path, tfs: list[str]) -> dict[str, Path]:
    found = {}
    for tf in tfs:
        dirs = sorted(path for path in out.glob(f"{tf}_*") if not path.name.endswith(".partial"))
        if len(dirs) == 1:
            found[tf] = dirs[0]
    return found


def compare(candidate: Path, reference: Path, tfs: list[str]) -> tuple[int, int, list[str]]:
    """Tables compared, tables identical, and the problems (missing runs or tables,
    different bytes)."""
    problems = []
    compared = identical = 0
    mine, theirs = run_dirs(candidate, tfs), run_dirs(reference, tfs)
    for tf in tfs:
        if tf not in mine or tf not in theirs:
            problems.append(
                f"{tf}: no run directory in {candidate if tf not in mine else reference}"
            )
            continue
        tables = {p.relative_to(mine[tf]) for p in mine[tf].rglob("*.csv")}
        expected = {p.relative_to(theirs[tf]) for p in theirs[tf].rglob("*.csv")}
        if tables != expected:
            problems.append(f"{tf}: tables differ: {sorted(map(str, tables ^ expected))}")
        for name in sorted(tables & expected):
            compared += 1
            if (mine[tf] / name).read_bytes() == (theirs[tf] / name).read_bytes():
                identical += 1
            else:
                problems.append(f"{tf}: {name} differs")
    batch = [sorted(d.glob("batch_*_interactions.csv")) for d in (candidate, reference)]
    if all(len(found) == 1 for found in batch):
        compared += 1
        if batch[0][0].read_bytes() == batch[1][0].read_bytes():
            identical += 1
        else:
            problems.append("batch interactions table differs")
    else:
        problems.append(f"batch interactions tables: {batch}")
    return compared, identical, problems


def main() -> int:
    args = parse_args()
    if args.start_slurm:
        subprocess.run([str(LOCAL_SLURM), "start"], check=True)
    try:
        return bench(args)
    finally:
        if args.start_slurm:
            subprocess.run([str(LOCAL_SLURM), "stop"], check=True)


def bench(args: argparse.Namespace) -> int:
    before = squeue()
    if before:
        print(f"squeue is not empty before the run: {before}; wait or cancel them first")
        return 2
    print(subprocess.run(["sinfo"], capture_output=True, text=True, check=True).stdout, end="")
    if args.workdir is None:
        holder = tempfile.TemporaryDirectory(prefix="bench_slurm_")
        work = Path(holder.name)
    else:
        work = args.workdir.absolute()
        work.mkdir(parents=True, exist_ok=True)
    data = write_dataset(
        make_dataset(n_genes=args.n_genes, n_tfs=args.n_tfs, seed=args.seed), work / "data"
    )
    data = tuple(path.absolute() for path in data)
    tfs = tf_names(args.n_tfs)[: args.tfs]
    tfs_file = work / "tfs.txt"
    tfs_file.write_text("".join(f"{tf}\n" for tf in tfs))
    security = ["--insecure_tcp"]
    marker = "tcp://"
    if not args.insecure_tcp:
        subprocess.run(
            [sys.executable, str(ROOT / "deploy" / "make_certs.py"), str(work / "tls")],
            check=True,
            capture_output=True,
        )
        security = ["--tls_dir", str(work / "tls")]
        marker = str(work / "tls")
    # The worker jobs inherit this environment (sbatch's default --export=ALL), so they
    # import the same tfbp_dask as this process.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    print(f"{len(tfs)} TFs ({','.join(tfs)}), {args.n_genes} genes x {args.n_tfs} TFs, "
          f"{args.n_bootstraps} bootstraps, seed {args.random_state}, "
          f"{'tcp' if args.insecure_tcp else 'mutual TLS'}; work in {work}")  # fmt: skip

    watch = JobWatch()
    started = time.perf_counter()
    driver = run_driver(
        [sys.executable, str(DRIVER), "--response_file", str(data[0]),
         "--predictors_file", str(data[1]), "--perturbed_tfs_file", str(tfs_file),
         "--output_dir", str(work / "out_slurm"), "--jobs", str(args.jobs),
         "--memory", args.memory, "--walltime", "00:30:00", "--interface", "lo",
         "--log_directory", str(work / "logs"), "--wait_timeout", "120",
         "--n_bootstraps", str(args.n_bootstraps), "--random_state", str(args.random_state),
         *security],
        env, work / "driver.log",
    )  # fmt: skip
    empty, waited = wait_squeue_empty()
    jobs = watch.stop()
    left = worker_processes(marker)
    joined = f"{driver['joined']:.1f} s after start" if driver["joined"] else "never"
    batch = f"{driver['batch']:.1f} s" if driver["batch"] is not None else "-"
    print(f"driver on this machine: exit {driver['status']}, wall {driver['wall']:.1f} s; "
          f"{len(jobs)} jobs submitted, {args.jobs} workers joined {joined}, "
          f"batch (workers joined to summary) {batch}")  # fmt: skip
    report(jobs, empty, waited, left)
    if jobs:
        queued = min(job["first"] for job in jobs.values()) - started
        running = [job["running"] for job in jobs.values() if job["running"] is not None]
        last = f"{max(running) - started:.1f} s" if running else "never"
        print(f"  first job in squeue {queued:.1f} s after start, all running after {last}")
    failures = []
    if driver["status"] or not driver["joined"]:
        failures.append("driver failed: see " + str(work / "driver.log"))
    if len(jobs) != args.jobs:
        failures.append(f"{len(jobs)} jobs seen, expected {args.jobs}")
    if not empty or left:
        failures.append("jobs or workers left behind")

    outputs = {"driver": work / "out_slurm"}
    if not args.no_driver_job:
        watch = JobWatch()
        job = run_driver_job(args, env, work, data, tfs_file, work / "out_driver_job")
        empty, waited = wait_squeue_empty()
        jobs = watch.stop()
        left = worker_processes(marker)
        print(f"driver as SLURM job {job['job_id']} (submit_driver.sbatch): "
              f"{'ok' if job['ok'] else 'FAILED'}, wall from sbatch to the job's end "
              f"{job['wall']:.1f} s; {len(jobs)} jobs (driver + workers)")  # fmt: skip
        report(jobs, empty, waited, left)
        if not job["ok"]:
            print(job["log"][-3000:])
            failures.append("driver job failed")
        if not empty or left:
            failures.append("jobs or workers left behind by the driver job")
        outputs["driver job"] = work / "out_driver_job"

    local = run_local(args, env, data, tfs, work / "out_local")
    print(f"local command (embedded cluster, 2 workers): exit {local['status']}, "
          f"wall {local['wall']:.1f} s")  # fmt: skip
    if local["status"]:
        failures.append("local run failed")
    for label, out in outputs.items():
        compared, identical, problems = compare(out, work / "out_local", tfs)
        print(f"{label} vs local: {compared} tables compared, {identical} identical")
        for problem in problems:
            print(f"  {problem}")
        failures += problems
    print("result: " + ("all identical, nothing left behind" if not failures else "FAILED"))
    for failure in failures:
        print(f"  {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
