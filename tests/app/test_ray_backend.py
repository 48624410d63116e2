"""The Ray backend on a local Ray instance (one ``ray.init()`` for this module, started by the first test that
needs it): a sweep of Ray trials (``mmviz sweep --backend ray``) writing to a PostgreSQL workspace and shown by
the dashboard; the dashboard's Stop reaches a Ray run; a Ray worker killed mid-run leaves its run 'lost', never
'running', and no process of it behind.

``make test`` installs ray (a test extra, as lightning); without it these tests are skipped, saying why."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mmviz.launcher import launch
from mmviz.ray_backend import ADDRESS_ENV, NAMESPACE
from mmviz.scheduler import scheduler_pid
from mmviz.store import LOST_AFTER_S, TERMINAL, open_store

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data.n_train=240", "train.threads=1"]  # one CPU each: two runs at once on the 2-CPU Ray below
# Set for this module (and the schedulers and Ray workers it starts): no usage-stats call home; a token of our own
# for Ray's token authentication (Ray >= 2.5x), so nothing is written to ~/.ray; the scheduler joins our Ray.
RAY_ENV = ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_TOKEN", "RAY_AUTH_MODE", ADDRESS_ENV)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for this module: ``ray.init()`` here (2 CPUs, no Ray dashboard, its own temporary folder), its
    address exported as MMVIZ_RAY_ADDRESS for the schedulers the tests start; shut down and removed afterwards."""
    ray = pytest.importorskip("ray", reason="the Ray backend needs ray ('make test' installs it)")
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    folder = tempfile.mkdtemp(prefix="mmviz-ray-")  # short: Ray's unix sockets live under it (108-byte limit)
    try:
        ray.init(
            num_cpus=2,
            object_store_memory=100 * 2**20,  # the runs pass no objects through Ray; not 30% of the machine's memory
            include_dashboard=False,
            namespace=NAMESPACE,
            log_to_driver=False,
            configure_logging=False,
            _temp_dir=folder,
        )
        os.environ[ADDRESS_ENV] = ray.get_runtime_context().gcs_address
        yield ray
    finally:
        ray.shutdown()  # ends every Ray process this ray.init() started (raylet, GCS, workers)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(folder, ignore_errors=True)


def _stop_scheduler(store) -> None:
    """End the workspace's scheduler (it would outlive the test, then the PostgreSQL server, polling)."""
    pid = scheduler_pid(store)
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _wait(store, run_ids, statuses, timeout=300.0, poll=0.2):
    deadline = time.monotonic() + timeout
    while True:
        runs = [store.get_run(r) for r in run_ids]
        if all(r["effective_status"] in statuses for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not {set(statuses)} after {timeout} s: {[(r['run_id'], r['effective_status']) for r in runs]}"
            )
        time.sleep(poll)


def _ray_actor_pids(ray) -> dict[str, int]:
    """``{actor name: worker pid}`` of every actor Ray's GCS knows in our namespace, dead ones included (Ray's own
    table; its public state API needs the Ray dashboard, which is off here)."""
    from ray._private.state import actors

    return {a["Name"]: a["Pid"] for a in actors().values() if a.get("Name")}


def _process_title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _processes_naming(text: str) -> list[str]:
    """The command lines of this machine's processes that contain ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                title = _process_title(int(proc.name))
            except OSError:
                continue
            if text in title:
                found.append(title)
    return found


def test_a_ray_sweep_into_postgresql_is_shown_by_the_dashboard(local_ray, postgres_workspace, open_page):
    sweep = [sys.executable, "-m", "mmviz", "sweep", "--workspace", postgres_workspace, "--backend", "ray",
             "--dataset", "synthetic", "--method", "baseline,ogm_ge", "--seeds", "0", "--epochs", "2",
             "--max-parallel", "2", "--name", "on-ray", "--wait"]  # fmt: skip
    for setting in TINY:
        sweep += ["--set", setting]
    with open_store(postgres_workspace) as store:
        try:
            out = subprocess.run(sweep, cwd=ROOT, capture_output=True, text=True, timeout=300)
        finally:
            _stop_scheduler(store)  # the scheduler the sweep started, which submitted the trials to Ray
        assert out.returncode == 0, out.stderr[-3000:]
        sweep_id, *run_ids = out.stdout.split()
        runs = [store.get_run(r) for r in run_ids]
        assert [r["status"] for r in runs] == ["finished", "finished"], [r["error"] for r in runs]
        assert [r["backend"] for r in runs] == ["ray", "ray"]
        # trained by the Ray actors the scheduler submitted (one per trial, named after it), not by local trainers
        by_name = _ray_actor_pids(local_ray)
        assert [by_name.get(f"mmviz-{r['run_id']}") for r in runs] == [r["pid"] for r in runs]
        for run_id in run_ids:  # every epoch's metrics, and the analysis process's diagnostics, are in PostgreSQL
            assert len(store.load_metrics(run_id, keys=["val/acc/fused"])) == 2
            assert len(store.load_metrics(run_id, keys=["imbalance/index"])) == 2
    at = open_page(postgres_workspace, "sweeps")
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert len(table) == 2 and set(table["status"]) == {"finished"}
    assert set(table["method"]) == {"baseline", "ogm_ge"} and table["fused acc @best"].between(0, 1).all()
    assert "on-ray · 2 trials" in at.selectbox(key="sweeps.selected").format_func(sweep_id)


def test_the_dashboard_stops_a_ray_run_and_a_killed_ray_worker_leaves_it_lost(local_ray, postgres_workspace, open_page):
    long = [*TINY, "train.epochs=400"]
    with open_store(postgres_workspace) as store:
        to_stop = launch(store, "synthetic", "baseline", long, backend="ray", name="to-stop")
        to_kill = launch(store, "synthetic", "baseline", long, backend="ray", name="to-kill")
        _wait(store, [to_stop, to_kill], ("running",))
        at = open_page(postgres_workspace, "live", run=to_stop)
        at.button(key="live.stop").click().run()  # the Live page's Stop button
        assert not at.exception, at.exception
        assert store.get_run(to_stop)["stop_requested"]
        assert _wait(store, [to_stop], TERMINAL)[0]["status"] == "stopped"

        # the run's analysis process, started by its worker as a program (the URL in its environment, not its argv)
        follower = f"mmviz.analysis.follower {to_kill}"
        deadline = time.monotonic() + 60
        while not _processes_naming(follower) and time.monotonic() < deadline:
            time.sleep(0.2)
        run = store.get_run(to_kill)
        assert run["effective_status"] == "running" and run["backend"] == "ray" and _processes_naming(follower)
        assert _process_title(run["pid"]).startswith("ray::")  # the pid the run reports is its Ray worker
        os.kill(run["pid"], signal.SIGKILL)  # the Ray worker dies mid-run
        killed = time.monotonic()
        run = _wait(store, [to_kill], ("lost", "failed"), timeout=LOST_AFTER_S + 15, poll=0.1)[0]
        assert time.monotonic() - killed <= LOST_AFTER_S
        time.sleep(1.0)  # and it stays so: nothing reports it running again
        assert store.get_run(to_kill)["effective_status"] in ("lost", "failed")
        deadline = time.monotonic() + 10  # and its analysis process does not linger
        while _processes_naming(follower) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_naming(follower) == []
