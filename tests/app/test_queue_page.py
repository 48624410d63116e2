"""The queue across dashboards: a restart does not lose it, and two dashboards start each queued run once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from mmviz.launcher import submit
from mmviz.scheduler import scheduler_pid, scheduler_running
from mmviz.store import open_store
from mmviz.store.queue import MAX_PARALLEL
from mmviz.training.config import build_run_config

ROOT = Path(__file__).resolve().parents[2]


def test_queue_survives_a_dashboard_restart_and_two_dashboards_start_each_run_once(
    tmp_path, open_page, kill_runs, tiny_run, wait_all, peak_running
):
    """The first run trains until the test stops it, so the second is still queued when the scheduler dies however
    slow the machine is (with two 1-epoch runs a loaded machine had finished both before the second page drew)."""
    ws = tmp_path / "ws"
    try:
        with open_store(ws) as store:
            store.set_setting(MAX_PARALLEL, 1)
            ids = [
                submit(
                    store,
                    build_run_config("synthetic", "baseline", tiny_run.sets, epochs=epochs, seed=s),
                    queue=True,
                    schedule_now=False,
                )
                for s, epochs in enumerate((10_000, 1))  # the first one runs until it is stopped below
            ]
            assert not scheduler_running(store)  # queued, nobody scheduling yet (as if the submitter died)
            first, second = open_page(ws, "runs"), open_page(ws, "runs")  # two dashboards on one workspace
            for at in (first, second):
                assert set(at.dataframe[0].value["status"]) <= {
                    "queued",
                    "queued #1",
                    "queued #2",
                    "queued #3",
                    "running",
                }
            pid = scheduler_pid(store)
            assert pid is not None
            # The machine serving the dashboards restarts: the scheduler dies with it; the queue is in the store.
            deadline = time.monotonic() + 120
            while store.get_run(ids[0])["status"] == "queued" and time.monotonic() < deadline:
                time.sleep(0.2)
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            assert not scheduler_running(store)
            assert [q["run_id"] for q in store.list_queue()] == [ids[1]]
            restarted = open_page(ws, "runs")  # a dashboard comes back and resumes the queue
            assert restarted.expander[0].label.startswith("Queue: 1 waiting")
            assert scheduler_running(store)
            store.request_stop(ids[0])  # the restarted scheduler starts the second run once the first has ended
            runs = wait_all(store, ids)
            assert list(runs["status"]) == ["stopped", "finished"]
            for rid in ids:  # trained exactly once: one row per step
                steps = list(store.load_metrics(rid, keys=["train/loss"])["step"])
                assert sorted(steps) == list(range(len(steps))) and steps
            assert len(steps) == tiny_run.steps_per_epoch
            assert peak_running(runs) == 1
            assert store.list_queue() == []
    finally:
        kill_runs(ws)
