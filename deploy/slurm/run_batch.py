#!/usr/bin/env python
"""Run tfbp_dask for many perturbed TFs on SLURM, with Dask workers as SLURM jobs.

This process is the Dask client *and* holds the scheduler: it reads the input
tables, submits the bootstrap fits, gathers them and writes every run
directory. The workers are single-threaded ``dask worker`` processes started
by ``dask_jobqueue.SLURMCluster``, one per SLURM job (1 core each). So the
input and output paths only need to be visible here, but the worker jobs must
be able to import the same tfbp_dask version (same virtual environment on a
shared file system: ``--venv``) and to connect back to this node.

The scheduler and workers speak mutual TLS: ``--tls_dir`` is a directory made
by ``deploy/make_certs.py`` (on the shared file system, readable by you only),
so nobody without its certificates can send code to the workers. Only on a
network you trust, ``--insecure_tcp`` runs without it. The dashboard listens
on 127.0.0.1 (``--dashboard_address`` to change; an SSH tunnel reaches it).

Requirements, in the environment that runs this script and the workers::

    python -m pip install /path/to/tfbp_dask "dask-jobqueue>=0.8"

(dask-jobqueue is not a dependency of tfbp_dask; only this script needs it.)

Example (from a login node or, better, inside ``submit_driver.sbatch``)::

    python deploy/make_certs.py ~/tfbp-tls      # once
    python deploy/slurm/run_batch.py --tls_dir ~/tfbp-tls \\
        --response_file data/response.csv --predictors_file data/predictors.csv \\
        --perturbed_tfs_file data/tfs.txt --output_dir results \\
        --jobs 32 --partition short --account mylab --venv "$HOME/venvs/tfbp" \\
        --n_bootstraps 1000 --random_state 42

``--dry_run`` prints the worker job script and exits without submitting anything.
Exit status: 0 when every TF ended (completed or stopped early), 1 when some
TF failed, 2 for a bad option or input.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from distributed import Client  # noqa: TID251 - this driver owns its Dask client

from tfbp_dask import BatchEntry, WorkflowConfig, run_many
from tfbp_dask.config import DEFAULTS, OptionError
from tfbp_dask.errors import ClusterUnavailable, InputError
from tfbp_dask.tls import check_readable

INSTALL_HINT = 'dask-jobqueue is required: python -m pip install "dask-jobqueue>=0.8"'
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# The files of deploy/make_certs.py, by Security field: the driver is scheduler and client.
TLS_FILES = {
    "tls_ca_file": "ca.pem",
    "tls_scheduler_cert": "scheduler.pem",
    "tls_scheduler_key": "scheduler-key.pem",
    "tls_worker_cert": "worker.pem",
    "tls_worker_key": "worker-key.pem",
    "tls_client_cert": "client.pem",
    "tls_client_key": "client-key.pem",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Run linear_perturbation_binding_modeling for every TF of a list, "
            "with Dask workers submitted as SLURM jobs (dask-jobqueue)."
        ),
    )
    inputs = parser.add_argument_group("inputs and outputs")
    inputs.add_argument("--response_file", type=Path, required=True)
    inputs.add_argument("--predictors_file", type=Path, required=True)
    inputs.add_argument(
        "--perturbed_tfs_file",
        type=Path,
        required=True,
        help="Perturbed TFs, one per line; blank lines and lines starting with # are skipped.",
    )
    inputs.add_argument("--blacklist_file", type=Path, default=None)
    inputs.add_argument("--output_dir", type=Path, default=DEFAULTS["output_dir"])
    inputs.add_argument("--output_suffix", default="")
    inputs.add_argument(
        "--no_input_parquet",
        action="store_true",
        help="input_data/ as CSV only (no Parquet twins of the processed inputs and draws).",
    )

    model = parser.add_argument_group("model options (as for the command line)")
    for name, kind in (
        ("n_bootstraps", int),
        ("random_state", int),
        ("top_n", int),
        ("all_data_ci_level", float),
        ("topn_ci_level", float),
        ("max_iter", int),
        ("engine", str),
        ("chunk_size", int),
    ):
        model.add_argument(f"--{name}", type=kind, default=DEFAULTS[name])
    model.add_argument("--iterative_dropout", action="store_true")
    model.add_argument("--stage4_lasso", action="store_true")
    model.add_argument("--stage4_topn", action="store_true")
    model.add_argument(
        "--max_concurrent_tfs",
        type=int,
        default=None,
        help="TFs in flight at once (default: twice the workers, at least 2).",
    )

    slurm = parser.add_argument_group("SLURM worker jobs (one single-threaded worker per job)")
    slurm.add_argument("--jobs", type=int, default=8, help="Worker jobs (maximum with --adapt).")
    slurm.add_argument(
        "--adapt",
        action="store_true",
        help="Scale between --min_jobs and --jobs with the load instead of a fixed --jobs.",
    )
    slurm.add_argument("--min_jobs", type=int, default=1, help="Lower bound with --adapt.")
    slurm.add_argument("--partition", "--queue", dest="partition", default=None)
    slurm.add_argument("--account", default=None)
    slurm.add_argument("--memory", default="4GiB", help="Memory per worker job.")
    slurm.add_argument("--walltime", default="02:00:00", help="Walltime per worker job.")
    slurm.add_argument(
        "--venv",
        type=Path,
        default=None,
        help="Virtual environment (on a shared file system) activated in each worker job; "
        "default: the Python running this script.",
    )
    slurm.add_argument(
        "--prologue",
        action="append",
        default=[],
        help="Extra shell line run before the worker starts (repeatable), "
        "e.g. --prologue 'module load python/3.11'.",
    )
    slurm.add_argument(
        "--job_extra",
        action="append",
        default=[],
        help="Extra #SBATCH directive (repeatable); write it with '=', "
        "e.g. --job_extra=--qos=normal.",
    )
    slurm.add_argument(
        "--worker_lifetime",
        default=None,
        help="Retire each worker after this long (e.g. 110m, below --walltime); "
        "use with --adapt so that replacements are submitted for long batches.",
    )
    slurm.add_argument(
        "--interface",
        default=None,
        help="Network interface the workers use to reach this node (e.g. ib0).",
    )
    slurm.add_argument(
        "--local_directory", default=None, help="Worker scratch directory (e.g. $TMPDIR)."
    )
    slurm.add_argument("--log_directory", type=Path, default=Path("dask-slurm-logs"))
    slurm.add_argument(
        "--wait_timeout",
        type=float,
        default=600.0,
        help="Seconds to wait for the worker jobs to start before running with those "
        "that have (at least one).",
    )
    slurm.add_argument(
        "--dry_run", action="store_true", help="Print the worker job script and exit."
    )

    security = parser.add_argument_group("security (mutual TLS between scheduler and workers)")
    security.add_argument(
        "--tls_dir",
        type=Path,
        default=None,
        help="Directory made by deploy/make_certs.py (ca.pem, scheduler/worker/client "
        "certificates and keys), on a file system the worker jobs see.",
    )
    security.add_argument(
        "--insecure_tcp",
        action="store_true",
        help="Plain TCP without TLS: anyone who reaches the scheduler port can run code "
        "on the workers; only on a trusted network.",
    )
    security.add_argument(
        "--dashboard_address",
        default="127.0.0.1:8787",
        help="Where the dashboard listens (default loopback only; e.g. :8787 for every interface).",
    )
    return parser.parse_args(argv)


def tls_security(args: argparse.Namespace):
    """The ``Security`` of scheduler, workers and this client; None with --insecure_tcp.

    Raises
    ------
    OptionError
        Neither ``--tls_dir`` nor ``--insecure_tcp``, or both.
    InputError
        A file of ``--tls_dir`` cannot be read.
    """
    from distributed.security import Security  # noqa: TID251 - this driver owns its cluster

    if args.insecure_tcp:
        if args.tls_dir is not None:
            raise OptionError("--tls_dir and --insecure_tcp exclude each other")
        return None
    if args.tls_dir is None:
        raise OptionError(
            "TLS is on: give --tls_dir (made by deploy/make_certs.py), or --insecure_tcp "
            "on a trusted network"
        )
    directory = args.tls_dir.expanduser().absolute()  # the worker jobs may start elsewhere
    files = {field: str(directory / name) for field, name in TLS_FILES.items()}
    for path in files.values():
        check_readable(path, "--tls_dir")
    return Security(require_encryption=True, **files)


def read_tfs(path: Path) -> list[str]:
    """TF names from a file: one per line, blanks and ``#`` comments skipped, no repeats."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"perturbed TFs file {path}: cannot read it ({error})") from None
    tfs = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not tfs:
        raise InputError(f"perturbed TFs file {path}: names no TF")
    repeated = sorted({tf for tf in tfs if tfs.count(tf) > 1})
    if repeated:
        raise InputError(f"perturbed TFs file {path}: repeats {', '.join(repeated)}")
    return tfs


def build_configs(args: argparse.Namespace, tfs: Sequence[str]) -> list[WorkflowConfig]:
    """One validated WorkflowConfig per TF, identical apart from the TF."""
    configs = []
    for tf in tfs:
        config = WorkflowConfig(
            response_file=args.response_file,
            predictors_file=args.predictors_file,
            perturbed_tf=tf,
            blacklist_file=args.blacklist_file,
            n_bootstraps=args.n_bootstraps,
            random_state=args.random_state,
            top_n=args.top_n,
            all_data_ci_level=args.all_data_ci_level,
            topn_ci_level=args.topn_ci_level,
            max_iter=args.max_iter,
            iterative_dropout=args.iterative_dropout,
            stage4_lasso=args.stage4_lasso,
            stage4_topn=args.stage4_topn,
            output_dir=args.output_dir,
            output_suffix=args.output_suffix,
            no_input_parquet=args.no_input_parquet,
            engine=args.engine,
            chunk_size=args.chunk_size,
            command_line=shlex.join(["python", *sys.argv]),
        )
        configs.append(config.validate())
    return configs


def make_cluster(args: argparse.Namespace, security=None):
    """The SLURMCluster (its scheduler runs in this process; no job is submitted yet).

    With ``security``, scheduler and workers listen on tls:// and each worker
    job is started with ``--tls-ca-file``/``--tls-cert``/``--tls-key``.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise SystemExit(INSTALL_HINT) from None

    prologue = [f"export {name}=1" for name in BLAS_THREAD_VARIABLES]
    if args.venv is not None:
        venv = args.venv.expanduser().absolute()  # the jobs may start elsewhere
        prologue.insert(0, f"source {shlex.quote(str(venv / 'bin' / 'activate'))}")
        python = shlex.quote(str(venv / "bin" / "python"))
    else:
        python = shlex.quote(sys.executable)
    prologue = list(args.prologue) + prologue

    # cores=1, processes=1: dask-jobqueue starts each worker with --nthreads 1.
    worker_args: list[str] = []
    if args.worker_lifetime:
        worker_args += ["--lifetime", args.worker_lifetime, "--lifetime-stagger", "5m"]

    return SLURMCluster(
        cores=1,
        processes=1,
        memory=args.memory,
        walltime=args.walltime,
        queue=args.partition,
        account=args.account,
        job_name="tfbp-worker",
        python=python,
        job_script_prologue=prologue,
        worker_extra_args=worker_args,
        job_extra_directives=list(args.job_extra),
        interface=args.interface,
        local_directory=args.local_directory,
        log_directory=str(args.log_directory),
        security=security,
        protocol="tls://" if security is not None else None,
        scheduler_options={"dashboard_address": args.dashboard_address},
    )


def wait_for_workers(client: Client, wanted: int, timeout: float) -> None:
    """Wait for ``wanted`` workers; after ``timeout`` seconds settle for at least one."""
    print(f"waiting for {wanted} worker(s) (SLURM jobs may be queued)...", flush=True)
    try:
        client.wait_for_workers(n_workers=wanted, timeout=timeout)
    except TimeoutError:
        have = len(client.nthreads())
        print(
            f"{have} of {wanted} workers after {timeout:g}s; "
            "starting once at least one is up (more join as their jobs start)",
            flush=True,
        )
        client.wait_for_workers(n_workers=1)
    print(f"{len(client.nthreads())} worker(s) connected", flush=True)


def print_summary(entries: Sequence[BatchEntry]) -> int:
    """One line per TF, then the counts; the number of failed TFs."""
    width = max(len(entry.perturbed_tf) for entry in entries)
    for entry in entries:
        where = entry.run_dir if entry.run_dir is not None else ""
        detail = f" ({entry.error})" if entry.error else ""
        print(f"{entry.perturbed_tf:<{width}}  {entry.status:<9}  {where}{detail}")
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    print("summary: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    return counts.get("failed", 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        tfs = read_tfs(args.perturbed_tfs_file)
        configs = build_configs(args, tfs)
        security = tls_security(args)
    except (OptionError, InputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not 1 <= args.min_jobs <= args.jobs:
        print("error: need 1 <= --min_jobs <= --jobs", file=sys.stderr)
        return 2

    # Logging is set up only once the options are good (a refusal leaves no handler behind).
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster = make_cluster(args, security)
    if args.dry_run:
        print(cluster.job_script())
        cluster.close()
        return 0

    extra = {}
    if args.max_concurrent_tfs is not None:
        extra["max_concurrent_tfs"] = args.max_concurrent_tfs
    with cluster, Client(cluster, security=security) as client:
        if args.adapt:
            cluster.adapt(minimum_jobs=args.min_jobs, maximum_jobs=args.jobs)
            wanted = args.min_jobs
        else:
            cluster.scale(jobs=args.jobs)
            wanted = args.jobs
        print(f"{len(tfs)} TFs; scheduler {client.scheduler.address}", flush=True)
        print(f"dashboard: {client.dashboard_link}", flush=True)
        wait_for_workers(client, wanted, args.wait_timeout)
        try:
            entries = run_many(configs, client=client, **extra)
        except (OptionError, InputError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except ClusterUnavailable as error:  # e.g. workers with another tfbp_dask version
            print(f"error: {error}", file=sys.stderr)
            return 1
    failed = print_summary(entries)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
