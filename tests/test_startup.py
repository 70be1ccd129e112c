"""Start-up: help and option errors import nothing heavy; the cluster starts while the inputs
are read, bad input stops it, and workers load the engine once per client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
from conftest import dataset_config, png_size
from distributed import Client

import tfbp_dask
import tfbp_dask.api
from tfbp_dask.errors import InputError
from tfbp_dask.execution import Executor

HEAVY = ("dask", "distributed", "pandas", "scipy", "sklearn", "matplotlib", "numba", "pyarrow")

# Runs the command line in a fresh interpreter, then reports which heavy packages it imported.
_PROBE = """
import json, sys
from tfbp_dask.cli import main
try:
    main(sys.argv[1:])
except SystemExit as stop:
    status = stop.code
else:
    status = 0
heavy = sorted(name for name in {heavy!r} if name in sys.modules)
print(json.dumps({{"status": status, "heavy": heavy}}), file=sys.stderr)
"""


def _probe(*argv: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_importing_the_command_line_imports_nothing_heavy():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, tfbp_dask, tfbp_dask.__main__, tfbp_dask.cli; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "argv, status",
    [
        (["--help"], 0),
        (["--version"], 0),
        (["linear_perturbation_binding_modeling", "--help"], 0),
        (["linear_perturbation_binding_modeling", "--n_bootstraps", "x"], 2),
    ],
)
def test_help_version_and_usage_errors_import_nothing_heavy(argv, status):
    assert _probe(*argv) == {"status": status, "heavy": []}


def test_option_and_missing_file_errors_import_nothing_heavy(tiny_dataset, tmp_path):
    _, response, predictors = tiny_dataset
    files = ["--response_file", str(response), "--predictors_file", str(predictors)]
    command = ["linear_perturbation_binding_modeling", "--perturbed_tf", "TF01"]
    out = ["--output_dir", str(tmp_path / "out")]
    for argv in (
        [*command, *files, "--n_bootstraps", "0", *out],
        [*command, *files, "--bins", "0,8", *out],
        [*command, *files, "--blacklist_file", str(tmp_path / "missing.txt"), *out],
        [*command, "--response_file", str(tmp_path), "--predictors_file", str(predictors), *out],
        # --resume of a directory that holds no interrupted run (its TF is read from there)
        ["linear_perturbation_binding_modeling", *files, "--resume", str(tmp_path)],
    ):
        assert _probe(*argv) == {"status": 2, "heavy": []}, argv
    assert not (tmp_path / "out").exists()


def test_version_prints_the_package_version():
    done = subprocess.run(
        [sys.executable, "-m", "tfbp_dask", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"tfbp-dask {tfbp_dask.__version__}"


def test_bad_input_stops_the_cluster_that_was_starting(tiny_dataset, tmp_path, monkeypatch):
    """The local cluster starts while the inputs are read; a TF that is not in the files is
    reported, no run directory exists, and the cluster is closed."""
    started: list[Executor] = []
    connect = Executor.connect

    def recording_connect(*args, **kwargs):
        executor = connect(*args, **kwargs)
        started.append(executor)
        return executor

    pending = []
    real_connect = tfbp_dask.api._connect

    def recording_start(*args):
        pending.append(real_connect(*args))
        return pending[-1]

    monkeypatch.setattr(Executor, "connect", recording_connect)
    monkeypatch.setattr(tfbp_dask.api, "_connect", recording_start)
    config = dataset_config(tiny_dataset, tmp_path / "out", perturbed_tf="NOT_A_TF", n_cpus=1)
    with pytest.raises(InputError, match="NOT_A_TF"):
        tfbp_dask.api.run(config)
    assert not (tmp_path / "out").exists()
    (starting,) = pending
    assert starting.wait_closed(timeout=120)
    (executor,) = started  # it did start, and was closed
    assert executor.client.status == "closed"
    assert executor.cluster.status.name == "closed"
    assert not executor.cluster.workers


def test_workers_load_the_engine_once_per_client(remote_cluster, tiny_dataset, tmp_path):
    def loaded() -> list[str]:
        import sys

        return [m for m in ("tfbp_dask.engines.gram", "matplotlib.figure") if m in sys.modules]

    with Client(remote_cluster.address) as client:
        assert set(map(len, client.run(loaded).values())) == {0}  # fresh workers
    base = dataset_config(tiny_dataset, tmp_path / "out", scheduler_address=remote_cluster.address)
    configs = [replace(base, perturbed_tf=tf, n_bootstraps=20) for tf in ("TF01", "TF02")]
    warmed = []
    warm = Executor.warm

    def counting_warm(self, engine):
        warmed.append(engine)
        return warm(self, engine)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Executor, "warm", counting_warm)
        entries = tfbp_dask.api.run_many(configs)
    assert [entry.status for entry in entries] == ["completed", "completed"]
    assert warmed == ["gram"]  # once for the batch's client, not once per TF
    with Client(remote_cluster.address) as client:
        deadline = time.monotonic() + 60
        while set(map(len, client.run(loaded).values())) != {2}:
            assert time.monotonic() < deadline, client.run(loaded)
            time.sleep(0.2)


def _warm_tasks(dask_scheduler) -> dict[str, tuple[str, list[str]]]:
    """Scheduler side: each warm-up task's state and the workers it is pinned to."""
    return {
        str(key): (task.state, sorted(task.worker_restrictions or ()))
        for key, task in dask_scheduler.tasks.items()
        if str(key).startswith("tfbp-warm-")
    }


def test_warm_up_stays_on_its_worker_and_leaves_nothing_when_that_worker_goes():
    """A busy worker's warm-up is not stolen by an idle one (each worker imports for itself);
    a warm-up whose worker left waits for it, and is dropped when the executor closes."""
    from distributed import LocalCluster, wait

    with (
        LocalCluster(
            n_workers=3, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        busy, leaving, _ = sorted(client.nthreads())
        blockers = [
            client.submit(time.sleep, 2.0, workers=[address], pure=False)
            for address in (busy, leaving)
        ]
        executor = Executor.connect(client=client)
        executor.warm("gram")
        warming = list(executor._warming)
        deadline = time.monotonic() + 30
        while len(pins := client.run_on_scheduler(_warm_tasks)) < len(warming):  # sent, not yet in
            assert time.monotonic() < deadline, pins
            time.sleep(0.05)
        pins = {key: workers for key, (_, workers) in pins.items()}
        assert sorted(map(tuple, pins.values())) == sorted([(w,) for w in client.nthreads()] * 2)
        name = next(n for n, w in cluster.workers.items() if w.address == leaving)
        cluster.sync(cluster.workers[name].close)
        blockers[0].result()
        stay = [future for future in warming if pins[future.key] != [leaving]]
        wait(stay, timeout=60)
        holders = client.who_has(stay)
        assert {key: sorted(holders[key]) for key in holders} == {f.key: pins[f.key] for f in stay}
        gone = {key for key, workers in pins.items() if workers == [leaving]}
        deadline = time.monotonic() + 30
        while {
            k
            for k, (state, _) in client.run_on_scheduler(_warm_tasks).items()
            if state == "no-worker"
        } != gone:
            assert time.monotonic() < deadline, client.run_on_scheduler(_warm_tasks)
            time.sleep(0.1)
        del warming, stay
        executor.close()  # does not own the client: it only lets go of its tasks
        assert client.status == "running"
        deadline = time.monotonic() + 30
        while client.run_on_scheduler(_warm_tasks):
            assert time.monotonic() < deadline, client.run_on_scheduler(_warm_tasks)
            time.sleep(0.1)


@pytest.mark.parametrize(("engine", "worker_type"), [("gram", "Worker"), ("sklearn", "Nanny")])
def test_embedded_cluster_is_threads_for_gram_and_processes_for_sklearn(
    tiny_dataset, tmp_path, engine, worker_type
):
    """gram's kernels release the GIL: its workers are threads of the client's process (no
    process to start, the kernels loaded once); sklearn's fits hold it: one process each."""
    config = dataset_config(tiny_dataset, tmp_path, engine=engine, n_cpus=2)
    with tfbp_dask.api._connect(config, None) as pending:
        executor = pending.result()
        assert [type(w).__name__ for w in executor.cluster.workers.values()] == [worker_type] * 2
        assert executor.client.nthreads() and set(executor.client.nthreads().values()) == {1}
        assert executor.dashboard_link is None  # not asked for
        assert executor.describe()["dashboard"] is None
        # Figures beside threads: a process of their own for a single run, not for a batch.
        assert (executor._drawing is not None) == (engine == "gram")
    with tfbp_dask.api._connect(config, None, batch=True) as pending:
        assert pending.result()._drawing is None


def test_dashboard_is_served_on_loopback_only_when_asked_for():
    with Executor.connect(n_workers=1, processes=False, dashboard=True) as executor:
        link = executor.dashboard_link
        assert link is not None and link.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(link, timeout=30) as page:
            assert page.status == 200 and b"Dask" in page.read()
        server = executor.cluster.scheduler.http_server
        hosts = {sock.getsockname()[0] for sock in server._sockets.values()}
        assert hosts == {"127.0.0.1"}
    with Executor.connect(n_workers=1, processes=False) as executor:
        server = executor.cluster.scheduler.http_server  # Dask's health and metrics routes
        assert {sock.getsockname()[0] for sock in server._sockets.values()} == {"127.0.0.1"}
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(
                f"http://127.0.0.1:{server.port}/status", timeout=30
            )  # no dashboard pages


def test_figures_beside_a_cluster_of_threads_are_drawn_in_a_process_of_their_own(
    tiny_dataset, tmp_path
):
    """The gram engine's embedded cluster is threads of the client's process; its figures
    are drawn by a process of their own (on another CPU, not under the client's GIL): the
    client never imports matplotlib, and every figure is on disk when the run ends."""
    _, response, predictors = tiny_dataset
    report = _probe(
        "linear_perturbation_binding_modeling",
        *("--response_file", str(response), "--predictors_file", str(predictors)),
        *("--perturbed_tf", "TF01", "--n_bootstraps", "20", "--top_n", "120", "--n_cpus", "2"),
        *("--output_dir", str(tmp_path)),
    )
    assert report["status"] == 0
    assert "matplotlib" not in report["heavy"] and "distributed" in report["heavy"]
    (run_dir,) = tmp_path.iterdir()
    figures = sorted(path.name for path in run_dir.rglob("*.png"))
    assert len(figures) == 7, figures
    for path in run_dir.rglob("*.png"):
        width, height = png_size(path.read_bytes())
        assert width > 100 and height > 100


def test_a_figure_is_drawn_here_when_the_drawing_process_is_gone(tmp_path):
    """A drawing process that died costs no figure: the figure is drawn here instead."""
    import os
    from concurrent.futures import Future

    import numpy as np

    from tfbp_dask import plots
    from tfbp_dask.offload import DrawingTask
    from tfbp_dask.tables import write_files

    alphas = np.geomspace(1e-3, 1.0, 50)

    def figure(name: str) -> list:
        return [(tmp_path / name, plots.alpha_distribution, (alphas, name))]

    failed: Future = Future()
    failed.set_exception(RuntimeError("the drawing process ended before this call"))
    DrawingTask(failed, write_files, ([], figure("failed.png"))).result()
    assert min(png_size((tmp_path / "failed.png").read_bytes())) > 100

    with Executor.connect(n_workers=1, processes=False) as executor:
        assert executor._drawing is not None
        ended = executor._drawing.submit(os._exit, 3)  # that process dies
        with pytest.raises(RuntimeError, match="ended before this call"):
            ended.result(timeout=60)
        executor.draw_figure(write_files, [], figure("after.png")).result()
    assert png_size((tmp_path / "after.png").read_bytes()) == png_size(
        (tmp_path / "failed.png").read_bytes()
    )


def test_a_driver_script_without_a_main_guard_runs_once(tiny_dataset, tmp_path):
    """The drawing process is a plain child interpreter: it never re-runs the caller's main
    script, so a script need not guard its body with ``if __name__ == "__main__"``."""
    _, response, predictors = tiny_dataset
    marker = tmp_path / "runs.txt"
    script = tmp_path / "driver.py"
    script.write_text(
        "from pathlib import Path\n"
        "from tfbp_dask import WorkflowConfig, run\n"
        f"with open({str(marker)!r}, 'a') as out:\n"
        "    out.write('ran\\n')\n"
        f"config = WorkflowConfig(Path({str(response)!r}), Path({str(predictors)!r}), 'TF01',\n"
        f"    n_bootstraps=20, top_n=120, n_cpus=2, output_dir=Path({str(tmp_path / 'out')!r}))\n"
        "print(run(config).outcome)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "ran\n"
    assert len(list((tmp_path / "out").rglob("*.png"))) == 7


_PROGRESS_PROBE = """
import io, json, sys
from tfbp_dask.progress import ProgressDisplay

class Terminal(io.StringIO):
    def isatty(self):
        return True

seen = {}
with ProgressDisplay(Terminal()):  # a run that ends before its first progress (bad input)
    pass
seen["after a run without progress"] = "rich" in sys.modules
terminal = Terminal()
with ProgressDisplay(terminal) as display:
    seen["before the first progress"] = "rich" in sys.modules
    display.update("TF01", "all_data", 3, 10)
    display.update("TF01", "all_data", 10, 10)
seen["after"] = "rich" in sys.modules
seen["shown"] = terminal.getvalue()
print(json.dumps(seen))
"""


def test_progress_bars_and_rich_come_with_the_first_progress():
    """On a terminal the bars (and rich's import) wait for the first progress, so that a bad
    input is reported without them; then the stage's bar shows its count."""
    done = subprocess.run(
        [sys.executable, "-c", _PROGRESS_PROBE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["after a run without progress"] is False
    assert seen["before the first progress"] is False
    assert seen["after"] is True
    assert "TF01 all_data" in seen["shown"]
    assert "10/10" in seen["shown"]
