"""The public entries: ``run`` for one TF, ``run_many`` for a batch on one
cluster, ``resume`` for an interrupted run.

Order matters: options are validated and the input files looked for first;
then the cluster is joined or started in the background (``_connect``) while
the inputs are read and checked, and bad input stops it before anything is
created, so it leaves nothing behind. What happens next lives in its own room:
``runner.py`` (one TF, from prepared inputs to its finished run directory),
``batch.py`` (many TFs at once, one row each) and ``provenance.py`` (the
manifest, ``data_summary.json``, resume checks and the run log).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import provenance
from .background import PendingExecutor
from .batch import BatchEntry, BatchHook, run_batch, write_batch_table, write_store
from .batch_report import write_interactions
from .config import WorkflowConfig
from .errors import InputError
from .outputs import timestamp_now
from .precheck import interrupted_tf
from .runner import BatchRun, InputCache, ProgressHook, RunOutcome, prepare, run_loaded
from .workflow import choose_seed

if TYPE_CHECKING:
    from distributed import Client  # noqa: TID251 - a type hint only
    from distributed.security import Security  # noqa: TID251 - a type hint only

    from .execution import Executor

__all__ = [
    "BatchEntry",
    "BatchHook",
    "ProgressHook",
    "RunOutcome",
    "available_tfs",
    "interrupted_tf",
    "resume",
    "run",
    "run_many",
]


def run(
    config: WorkflowConfig,
    client: Client | None = None,
    progress: ProgressHook | None = None,
    security: Security | None = None,
) -> RunOutcome:
    """Run the whole workflow for one TF and write its run directory.

    Parameters
    ----------
    config : WorkflowConfig
    client : distributed.Client, optional
        An existing client to submit to; it is not closed. Without it, the
        config's ``scheduler_address`` is joined or a local cluster of
        ``n_cpus`` workers is started (and closed at the end).
    progress : callable, optional
        Told ``(perturbed_tf, stage, done, total)`` after every finished chunk.
    security : distributed.security.Security, optional
        Certificates for joining a ``tls://`` ``scheduler_address``; by
        default the config's ``tls_*`` files, then Dask's configuration.

    Raises
    ------
    OptionError, InputError
        Before anything is created; what was started (the cluster starts while
        the inputs are read) is stopped.
    """
    config.validate().check_files()
    with _connect(config, client, security) as cluster:  # starts while the inputs are read
        data = prepare(config, InputCache([config.perturbed_tf]))
        return run_loaded(config, data, cluster.result(), progress)


def run_many(
    configs: Sequence[WorkflowConfig],
    client: Client | None = None,
    progress: ProgressHook | None = None,
    tfs_progress: BatchHook | None = None,
    max_concurrent_tfs: int | None = None,
    resume_batch: bool = False,
    security: Security | None = None,
    cache: InputCache | None = None,
) -> list[BatchEntry]:
    """Run several TFs concurrently on one cluster; one TF's failure spares the others.

    Parameters
    ----------
    configs : sequence of WorkflowConfig
        One per TF. The cluster settings (``n_cpus``, ``scheduler_address``, ``tls_*``) and
        ``output_dir`` of the first are used for the batch.
    client : distributed.Client, optional
        An existing client; it is not closed.
    progress : callable, optional
        Bootstrap progress, as for ``run``.
    tfs_progress : callable, optional
        Told ``(tfs_done, tfs_total)`` whenever a TF ends.
    max_concurrent_tfs : int, optional
        TFs in flight at once (default: twice the workers, at least 2); the
        client holds the inputs and draws of these TFs only.
    resume_batch : bool
        Continue an interrupted batch TF by TF: in each config's ``output_dir``,
        a TF with a finished run directory is not run again (its entry says
        ``done earlier``), a TF with a ``.partial`` directory is resumed from
        its checkpoints, and the others start afresh.
    security : distributed.security.Security, optional
        Certificates for a ``tls://`` scheduler, as for ``run``.
    cache : InputCache, optional
        Tables already read (the one ``available_tfs`` was given): not read again.

    Returns
    -------
    list of BatchEntry
        In the order of ``configs``. Also written to
        ``{output_dir}/batch_{timestamp}.csv``.

    Raises
    ------
    OptionError, InputError
        An invalid option, or an input file that cannot be used at all (before
        anything is created). Problems of a single TF are recorded in its entry.
    """
    if not configs:
        raise ValueError("run_many needs at least one config")
    for config in configs:
        config.validate().check_files()
    first = configs[0]
    cluster = _connect(first, client, security, batch=True)  # starts while the inputs are read
    try:
        cache = InputCache() if cache is None else cache
        for config in configs:  # a bad file fails the whole batch, before anything is written
            cache.table(config.response_file, "response")
            cache.table(config.predictors_file, "predictors")
            cache.blacklist(config.blacklist_file)
        _check_one_runs(configs, cache)
    except BaseException:
        cluster.close()  # what was started stops
        raise
    started = timestamp_now()
    with cluster, cluster.result() as executor:
        limit = max_concurrent_tfs or max(2, 2 * executor.n_workers)
        # TFs without --random_state share one drawn seed (so, their draws: BatchStore).
        store = write_store(configs, cache, executor, started)
        batch = BatchRun(seed=choose_seed(None), store=store)
        entries = run_batch(
            configs, cache, executor, progress, tfs_progress, limit, resume_batch, batch
        )
        write_batch_table(first.output_dir, started, entries)
        write_interactions(
            first.output_dir,
            started,
            (i for e in entries for i in e.interactions),
            len(entries),
            render=executor.render,
        )
    return entries


def resume(
    partial_dir: Path,
    config: WorkflowConfig,
    client: Client | None = None,
    progress: ProgressHook | None = None,
    security: Security | None = None,
) -> RunOutcome:
    """Finish an interrupted run from its ``.partial`` directory.

    Only bootstraps without a checkpoint are fitted; the outputs are the same,
    byte for byte, as those of an uninterrupted run.

    Raises
    ------
    InputError
        ``partial_dir`` is not an interrupted run, or its inputs' sha256 or an
        option that changes numbers differs from ``config``.
    """
    config.validate().check_files()
    partial_dir = Path(partial_dir)
    provenance.check_resumable(partial_dir, config)
    with _connect(config, client, security) as cluster:  # starts while the inputs are read
        data = prepare(config, InputCache([config.perturbed_tf]))
        return run_loaded(config, data, cluster.result(), progress, resume_from=partial_dir)


def available_tfs(
    response_file: Path, predictors_file: Path, cache: InputCache | None = None
) -> list[str]:
    """TFs that are a column of both files, in the predictors file's column order.

    ``cache`` keeps the tables read, for a ``run_many`` of those TFs to reuse.
    """
    cache = InputCache() if cache is None else cache
    response_columns = set(cache.table(response_file, "response").columns)
    return [c for c in cache.table(predictors_file, "predictors").columns if c in response_columns]


def _check_one_runs(configs: Sequence[WorkflowConfig], cache: InputCache) -> None:
    """Raise the first TF's InputError when no TF of the batch can be prepared.

    Only the TFs up to the first good one are prepared here (and dropped): each
    TF's inputs are prepared again when its turn comes, so that the client never
    holds every TF's arrays at once.
    """
    first_error: InputError | None = None
    for config in configs:
        try:
            prepare(config, cache)
        except InputError as error:  # this TF only (e.g. absent from the response file)
            first_error = first_error or error
        else:
            return
    assert first_error is not None
    raise first_error  # nothing can run: bad input, before anything is written


def _connect(
    config: WorkflowConfig,
    client: Client | None,
    security: Security | None = None,
    batch: bool = False,
) -> PendingExecutor:
    """The cluster of a run: the caller's client, the config's scheduler, or a local one.

    Connected in the background (``PendingExecutor``), Dask's import included;
    once connected, the workers load the config's engine. A local cluster for
    an engine whose fits release the GIL (``gram``) is ``n_cpus`` worker
    threads of this process: it starts in a fraction of a second and loads the
    engine once, and a single run's figures are drawn by a process of their own;
    other engines get one worker process per CPU.
    """

    def connect() -> Executor:
        from .cluster import client_security  # Dask: imported in the background
        from .execution import Executor

        given = security
        if given is None and config.scheduler_address is not None:
            given = client_security(config.tls_ca_file, config.tls_cert, config.tls_key)
        return Executor.connect(
            config.n_cpus,
            config.scheduler_address,
            client,
            processes=config.starts_worker_processes,
            dashboard=config.dashboard,
            connect_timeout=config.connect_timeout,
            security=given,
            drawing_process=not batch,
        )

    return PendingExecutor(connect, warm=config.engine)
