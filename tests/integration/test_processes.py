"""Real trainer processes against one store: completion, kill -9, concurrent writers, stop by signal."""

import os
import signal
import time

import pytest

from mmviz.cli import EXIT_STOPPED
from mmviz.launcher import prepare_run, spawn_run, stop
from mmviz.store import RunStore
from mmviz.training.config import build_run_config

SMALL = ["data.n_train=240", "train.batch_size=32"]
STEPS_PER_EPOCH = 240 // 32 + 1


def _wait(store, run_id, statuses, timeout=120.0, key=None, min_rows=0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = store.get_run(run_id)
        if key is None and run["effective_status"] in statuses:
            return run
        if key is not None and len(store.load_metrics(run_id, keys=[key])) >= min_rows:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not reach {statuses} / {key} in {timeout}s: {store.get_run(run_id)}")


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "ws")
    yield s
    s.close()


def test_three_concurrent_runs_lose_nothing(store):
    ids = []
    for seed in range(3):
        cfg = build_run_config("synthetic", "baseline", SMALL, epochs=4, seed=seed)
        ids.append(prepare_run(store, cfg))
    procs = [spawn_run(store, run_id) for run_id in ids]
    for p in procs:
        assert p.wait(timeout=180) == 0
    for run_id in ids:
        assert store.get_run(run_id)["status"] == "finished"
        df = store.load_metrics(run_id)
        loss = df[df.key == "train/loss"]
        assert len(loss) == 4 * STEPS_PER_EPOCH
        assert sorted(loss.step) == list(range(4 * STEPS_PER_EPOCH))
        assert (df.key == "val/acc/fused").sum() == 4 and (df.key == "test/acc/fused").sum() == 1


def test_kill_9_mid_run_keeps_committed_rows_and_shows_lost(store):
    cfg = build_run_config("synthetic", "baseline", SMALL, epochs=400)
    run_id = prepare_run(store, cfg)
    proc = spawn_run(store, run_id)
    _wait(store, run_id, None, key="val/acc/fused", min_rows=2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    reopened = RunStore(store.workspace)
    run = reopened.get_run(run_id)
    assert run["status"] == "running" and run["effective_status"] == "lost"
    loss = reopened.load_metrics(run_id, keys=["train/loss"])
    steps = sorted(loss.step)
    assert steps == list(range(len(steps)))  # every committed row is there, no gaps
    assert len(steps) >= 2 * STEPS_PER_EPOCH
    assert "lost" in set(reopened.list_runs().effective_status)
    reopened.close()


def test_stop_request_and_sigterm_both_end_stopped(store):
    ids = []
    for _ in range(2):
        run_id = prepare_run(store, build_run_config("synthetic", "baseline", SMALL, epochs=400))
        ids.append((run_id, spawn_run(store, run_id)))
    for run_id, _ in ids:
        _wait(store, run_id, None, key="val/acc/fused", min_rows=1)
    (a, pa), (b, pb) = ids
    stop(store, a, wait=True)
    os.kill(pb.pid, signal.SIGTERM)
    assert pa.wait(timeout=60) == EXIT_STOPPED and pb.wait(timeout=60) == EXIT_STOPPED  # 3, as in the foreground
    for run_id in (a, b):
        run = store.get_run(run_id)
        assert run["status"] == "stopped" and run["effective_status"] == "stopped"
        assert (store.run_dir(run_id) / "checkpoints" / "stopped.pt").is_file()


def test_failure_is_recorded_with_its_message(store, tmp_path):
    import numpy as np

    path = tmp_path / "d.npz"
    y = np.repeat(np.arange(2), 20)
    np.savez(path, a=np.random.default_rng(0).normal(size=(40, 3)), b=np.ones((40, 2)), label=y)
    cfg = build_run_config("arrays", "baseline", [f"data.path={path}"], epochs=2)
    run_id = prepare_run(store, cfg)
    path.unlink()  # the data disappears between launch and start
    proc = spawn_run(store, run_id)
    assert proc.wait(timeout=60) == 1
    run = store.get_run(run_id)
    assert run["status"] == "failed" and "no such file" in run["error"]
