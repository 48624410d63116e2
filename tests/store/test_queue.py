"""The run queue in the store (SQLite and PostgreSQL): order, move, cancel, settings, and claims that are atomic
across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mmviz.errors import StoreError
from mmviz.store import RunStore, open_store
from mmviz.store.queue import CANCELLED, MAX_PARALLEL, default_max_parallel

REPO = Path(__file__).resolve().parents[2]


def make_run(store: RunStore, name: str = "r") -> str:
    return store.create_run(
        config={}, name=name, dataset="synthetic", method="baseline", fusion="concat", modalities=["a", "b"]
    )


@pytest.fixture
def store(any_workspace):
    with open_store(any_workspace) as s:
        yield s


def test_queue_keeps_order_moves_and_cancels(store):
    ids = [make_run(store, f"r{i}") for i in range(4)]
    assert [store.enqueue(r) for r in ids] == [1, 2, 3, 4]
    store.move_queued(ids[3], 1)
    store.move_queued(ids[0], 99)  # clamped to the end
    assert [q["run_id"] for q in store.list_queue()] == [ids[3], ids[1], ids[2], ids[0]]
    assert [q["position"] for q in store.list_queue()] == [1, 2, 3, 4]
    store.cancel_queued(ids[1])
    run = store.get_run(ids[1])
    assert run["status"] == "stopped" and run["error"] == CANCELLED and run["finished"] is not None
    assert [q["run_id"] for q in store.list_queue()] == [ids[3], ids[2], ids[0]]
    with pytest.raises(StoreError, match="not in the queue"):
        store.cancel_queued(ids[1])
    with pytest.raises(StoreError, match="not in the queue"):
        store.move_queued(ids[1], 1)
    store.delete_run(ids[2])
    assert [q["run_id"] for q in store.list_queue()] == [ids[3], ids[0]]


def test_queue_survives_reopening_the_store(any_workspace):
    with open_store(any_workspace) as a:
        ids = [make_run(a) for _ in range(3)]
        for r in ids:
            a.enqueue(r)
        a.move_queued(ids[2], 1)
        a.set_setting(MAX_PARALLEL, 3)
    with open_store(any_workspace) as b:
        assert [q["run_id"] for q in b.list_queue()] == [ids[2], ids[0], ids[1]]
        assert b.get_setting(MAX_PARALLEL) == 3


def test_only_new_runs_can_be_queued(store):
    rid = make_run(store)
    store.set_status(rid, "running", pid=os.getpid())
    with pytest.raises(StoreError, match="only new runs can be queued"):
        store.enqueue(rid)
    with pytest.raises(ValueError, match="Unknown backend 'slurm'"):
        store.enqueue(make_run(store), backend="slurm")


def test_max_parallel_setting_default_and_validation(store):
    assert store.get_setting(MAX_PARALLEL) == default_max_parallel() >= 1
    for bad in (0, -2, "two", 1.5):
        with pytest.raises(ValueError, match="'max_parallel' must be a whole number >= 1. Got"):
            store.set_setting(MAX_PARALLEL, bad)
    with pytest.raises(ValueError, match="Unknown workspace setting 'colour'"):
        store.set_setting("colour", "red")
    store.set_setting(MAX_PARALLEL, 2)
    assert store.get_setting(MAX_PARALLEL) == 2


def test_default_max_parallel_is_one_per_gpu_else_half_the_cores(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert default_max_parallel() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert default_max_parallel() == max(1, (os.cpu_count() or 1) // 2)


def test_claim_takes_the_head_up_to_the_free_slots(store):
    running = make_run(store)
    store.set_status(running, "running", pid=os.getpid())  # a live process on this host holds a slot
    ids = [make_run(store) for _ in range(4)]
    for r in ids:
        store.enqueue(r)
    store.move_queued(ids[2], 1)
    assert store.claim_queued(1) == []
    assert store.claim_queued(3) == [(ids[2], "local"), (ids[0], "local")]
    assert store.claim_queued(3) == []  # the two claimed (not yet started) runs hold their slots
    assert [q["run_id"] for q in store.list_queue()] == [ids[1], ids[3]]
    store.set_status(running, "finished")
    assert store.claim_queued(3) == [(ids[1], "local")]


def test_a_dead_process_or_stale_claim_frees_its_slot(store):
    dead = make_run(store)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store.set_status(dead, "running", pid=proc.pid)
    claimed_long_ago = make_run(store)
    store.update_run(claimed_long_ago, heartbeat=time.time() - 3600)
    store._db.write(
        lambda c: c.execute("UPDATE runs SET created = ? WHERE run_id = ?", (time.time() - 3600, claimed_long_ago))
    )
    waiting = make_run(store)
    store.enqueue(waiting)
    assert store.claim_queued(1) == [(waiting, "local")]


CLAIMER = textwrap.dedent(
    """
    import json, random, sys, time
    from mmviz.store import open_store

    store = open_store(sys.argv[1])
    limit, got, peak = int(sys.argv[2]), [], 0
    time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # both start claiming at the same moment
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        claimed = store.claim_queued(limit)
        for run_id, _ in claimed:
            store.set_status(run_id, "running")  # as the trainer would, with a fresh heartbeat
            got.append(run_id)
        active = int((store.list_runs().effective_status == "running").sum())
        peak = max(peak, active)
        time.sleep(0.05)
        for run_id, _ in claimed:
            store.set_status(run_id, "finished")
        time.sleep(random.uniform(0.0, 0.1))  # let the other claimer in too
        if not store.list_queue():
            break
    print(json.dumps({"got": got, "peak": peak}))
    """
)


def test_two_processes_claim_each_run_once_and_never_exceed_the_limit(store):
    ids = [make_run(store) for _ in range(24)]
    for r in ids:
        store.enqueue(r)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start_at = str(time.time() + 4)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(store.workspace), "2", start_at],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    got = [r for res in results for r in res["got"]]
    assert sorted(got) == sorted(ids)  # every run claimed, none twice
    assert all(res["got"] for res in results), results  # both really took part
    assert max(res["peak"] for res in results) <= 2
    runs = store.list_runs()
    assert set(runs.status) == {"finished"}
    events = sorted([(t, 1) for t in runs.started] + [(t, -1) for t in runs.finished])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 2


def test_claim_can_take_only_some_backends(store):
    local, ray = make_run(store), make_run(store)
    store.enqueue(ray, backend="ray")
    store.enqueue(local)
    assert store.claim_queued(5, ("local",)) == [(local, "local")]  # a page view starts local runs only
    assert store.claim_queued(5) == [(ray, "ray")]  # the scheduler takes the rest
