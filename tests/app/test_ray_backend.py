"""The Ray backend against a local Ray instance (``ray start --head``, once for this module): a sweep of Ray trials
writing to a PostgreSQL workspace and watched by the dashboard; a stop from the dashboard reaches a Ray run; a
killed Ray worker leaves its run 'lost'. Slow (a Ray head takes ~30 s to start here): ``pytest -m slow``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from mmviz.launcher import launch, stop
from mmviz.store import LOST_AFTER_S, TERMINAL, open_store
from mmviz.sweep import SweepSpec, parse_sets, start_sweep

pytestmark = pytest.mark.slow
TINY = ["data.n_train=240", "train.threads=1"]


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray head for this module; its address is exported as MMVIZ_RAY_ADDRESS (schedulers inherit it)."""
    pytest.importorskip("ray", reason="the Ray backend needs 'pip install ray'")
    folder = tempfile.mkdtemp(prefix="mmviz-ray-")
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts"]
    out = subprocess.run(
        [*ray_cli, "start", "--head", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={folder}", "--port=0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    address = re.search(r"ray start --address='([^']+)'", out.stdout + out.stderr).group(1)
    old = os.environ.get("MMVIZ_RAY_ADDRESS")
    os.environ["MMVIZ_RAY_ADDRESS"] = address
    yield address
    if old is None:
        os.environ.pop("MMVIZ_RAY_ADDRESS", None)
    subprocess.run([*ray_cli, "stop", "--force"], capture_output=True, timeout=120)


def _wait(store, run_ids, statuses, timeout=600.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [store.get_run(r) for r in run_ids]
        if all(r["effective_status"] in statuses for r in runs):
            return runs
        time.sleep(0.5)
    raise AssertionError(f"not {statuses} after {timeout}s: {[(r['run_id'], r['effective_status']) for r in runs]}")


def test_ray_sweep_into_postgresql_watched_by_the_dashboard(ray_address, postgres_workspace, open_page):
    methods = ("baseline", "ogm_ge")
    params, fixed = parse_sets(TINY, "synthetic", methods)
    spec = SweepSpec(methods=methods, params=params, seeds=(0,), dataset="synthetic", fixed=fixed, epochs=1)
    with open_store(postgres_workspace) as store:
        sweep_id, run_ids = start_sweep(store, spec, name="on-ray", backend="ray", max_parallel=2)
        runs = _wait(store, run_ids, TERMINAL)
        assert [r["status"] for r in runs] == ["finished", "finished"], [r["error"] for r in runs]
        assert all(r["pid"] != os.getpid() for r in runs)  # trained in Ray workers, not here
        assert all(len(store.load_metrics(r, keys=["val/acc/fused"])) == 1 for r in run_ids)
    at = open_page(postgres_workspace, "sweeps")
    assert not at.error, [e.value for e in at.error]
    assert set(at.dataframe[0].value["status"]) == {"finished"} and len(at.dataframe[0].value) == 2


def test_stop_reaches_a_ray_run_and_a_killed_worker_shows_lost(ray_address, tmp_path):
    ws = tmp_path / "ws"
    with open_store(ws) as store:
        long = [*TINY, "train.epochs=400"]
        to_stop = launch(store, "synthetic", "baseline", long, backend="ray")
        to_kill = launch(store, "synthetic", "baseline", long, backend="ray")
        _wait(store, [to_stop, to_kill], ("running",))
        stop(store, to_stop)  # what the dashboard's Stop button calls
        assert _wait(store, [to_stop], TERMINAL)[0]["status"] == "stopped"
        pid = store.get_run(to_kill)["pid"]
        os.kill(pid, signal.SIGKILL)  # the Ray worker process dies mid-run
        t = time.monotonic()
        run = _wait(store, [to_kill], ("lost", "failed"), timeout=LOST_AFTER_S + 30)[0]
        assert run["effective_status"] in ("lost", "failed") and time.monotonic() - t <= LOST_AFTER_S + 30
