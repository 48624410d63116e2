"""The projection worker process: on-disk cache, errors, crash reporting and restart, and a real UMAP.

Most tests use a worker started without the UMAP warm-up and only ask it for PCA, so no numba code is compiled;
the one UMAP test uses the process-wide worker (:func:`ensure_worker`), which the embeddings page test shares, so
umap compiles once per session.
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest

from mmviz.analysis.worker import (
    FAULTS_ENV,
    ProjectionRequest,
    ProjectionWorker,
    ensure_worker,
    load_result,
)
from mmviz.errors import ConfigError
from mmviz.testing import wait_for


@pytest.fixture(scope="module")
def worker():
    """A worker without the UMAP warm-up, with fault injection on (the '_crash' method)."""
    w = ProjectionWorker(warm=False, env={FAULTS_ENV: "1"})
    assert w.wait_ready(60), w._log_tail()
    yield w
    w.stop()


@pytest.fixture
def snapshots(tmp_path, write_snapshot):
    """Two epochs' snapshot files in a run folder layout: ``{epoch: path}``."""
    folder = tmp_path / "runs" / "r1" / "snapshots"
    paths = {}
    for epoch in (1, 2):
        paths[epoch] = folder / f"epoch_{epoch:04d}.npz"
        write_snapshot(paths[epoch], n=40, seed=epoch)
    return paths


def pca_request(paths, epoch=1, view="a", **kw) -> ProjectionRequest:
    return ProjectionRequest.create("r1", view, "pca", [epoch], [paths[epoch]], reference=str(paths[2]), **kw)


def done(w: ProjectionWorker, request: ProjectionRequest, timeout: float = 60.0) -> None:
    wait_for(lambda: w.state(request).state in ("done", "error"), timeout, f"{request.describe()}")
    assert w.state(request).state == "done", w.state(request).message


def test_second_request_does_no_work(worker, snapshots):
    request = pca_request(snapshots)
    before = worker.stats().get("computed", 0)
    assert worker.submit(request, 2) == "queued"
    done(worker, request)
    assert request.cache_path.parent == snapshots[1].parent / "proj"  # cached next to the snapshot
    # the worker counts a result after publishing it
    wait_for(lambda: worker.stats().get("computed", 0) == before + 1, 30, "the worker to count the result")
    mtime = request.cache_path.stat().st_mtime_ns
    result = load_result(request)
    assert result.embeddings[1].shape == (40, 2) and np.isfinite(result.embeddings[1]).all()

    # the client answers from the cache: nothing is queued, nothing recomputed
    assert worker.submit(request, 2) == "done"
    assert not list((worker.root / "queue").glob("*.json"))
    # the same request reaching the worker anyway (two pages at once) is served from the cache too
    same = ProjectionRequest.create("r1", "a", "pca", [1], [snapshots[1]], reference=str(snapshots[2]))
    (worker.root / "queue" / f"{same.key}.json").write_text(
        json.dumps({"priority": 1, "seq": 0, "request": same.to_json()})
    )
    wait_for(lambda: worker.stats().get("cached", 0) >= 1, 30, "the worker to find the result cached")
    assert worker.stats()["computed"] == before + 1
    assert request.cache_path.stat().st_mtime_ns == mtime
    assert load_result(request).computed_at == result.computed_at


def test_cache_key_covers_run_epoch_view_parameters_and_the_file(snapshots, write_snapshot):
    base = pca_request(snapshots)
    base_key = base.key
    assert pca_request(snapshots).key == base_key
    others = [pca_request(snapshots, epoch=2), pca_request(snapshots, view="b"),
              ProjectionRequest.create("r2", "a", "pca", [1], [snapshots[1]], reference=str(snapshots[2]))]  # fmt: skip
    umap = ProjectionRequest.create("r1", "a", "umap", [1], [snapshots[1]])
    assert umap.key != ProjectionRequest.create("r1", "a", "umap", [1], [snapshots[1]], {"n_neighbors": 5}).key
    assert umap.key == ProjectionRequest.create("r1", "a", "umap", [1], [snapshots[1]], {"n_neighbors": 15}).key
    assert len({base.key, umap.key, *(o.key for o in others)}) == 5
    write_snapshot(snapshots[1], n=40, seed=99)  # the snapshot was rewritten: its cached projections are stale
    os.utime(snapshots[1], ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert pca_request(snapshots).key != base_key


def test_bad_method_and_parameter_are_one_sentence(snapshots):
    with pytest.raises(ConfigError, match="Unknown projection method 'umpa'. Did you mean 'umap'?"):
        ProjectionRequest.create("r1", "a", "umpa", [1], [snapshots[1]])
    with pytest.raises(ConfigError, match="Unknown umap parameter 'k'. Valid: n_neighbors"):
        ProjectionRequest.create("r1", "a", "umap", [1], [snapshots[1]], {"k": 3})


def test_a_request_that_raises_is_reported_and_the_worker_carries_on(worker, snapshots):
    pid = worker.pid
    bad = pca_request(snapshots, view="nope")
    assert worker.submit(bad, 2) == "queued"
    wait_for(lambda: worker.state(bad).state == "error", 30, "the error")
    assert "has no view 'nope'" in worker.state(bad).message
    assert worker.submit(bad, 2) == "error"  # not retried in a loop by every page rerun ...
    assert worker.submit(bad, 2, retry=True) == "queued"  # ... only when asked to
    wait_for(lambda: worker.state(bad).state == "error", 30, "the error again")
    good = pca_request(snapshots, view="b")
    worker.submit(good, 2)
    done(worker, good)
    assert worker.pid == pid and worker.alive()


def test_a_crash_is_reported_and_the_worker_restarts_and_serves(worker, snapshots, monkeypatch):
    monkeypatch.setenv(FAULTS_ENV, "1")
    start = worker.start

    def slow_start():  # a slow restart (a loaded machine): the report must still come after it, not before
        time.sleep(0.5)
        start()

    monkeypatch.setattr(worker, "start", slow_start)
    old_pid, crashes = worker.pid, len(worker.crashes)
    crash = ProjectionRequest.create("r1", "a", "_crash", [1], [snapshots[1]])
    worker.submit(crash, 2)
    wait_for(lambda: len(worker.crashes) > crashes, 30, "the crash report")
    report = worker.crashes[-1]
    assert report.returncode == 3 and "_crash of 'a' at epoch 1" in report.request
    assert "crashed (exit code 3)" in report.message() and "restarted" in report.message()
    state = worker.state(crash)
    assert state.state == "error" and "crashed" in state.message  # the page shows it; it is not retried
    assert worker.pid != old_pid and worker.alive()
    request = pca_request(snapshots, epoch=2, view="fused")
    worker.submit(request, 2)
    done(worker, request)

    # killed from outside while idle: reported and restarted as well
    killed = worker.pid
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: worker.pid != killed and worker.alive(), 30, "the restart")
    assert worker.crashes[-1].returncode == -signal.SIGKILL and worker.crashes[-1].request is None
    again = pca_request(snapshots, epoch=2, view="a")
    worker.submit(again, 2)
    done(worker, again)


def test_prune_withdraws_only_this_owners_unwanted_requests(tmp_path, snapshots):
    w = ProjectionWorker(root=tmp_path / "paused", warm=False)
    w.stop()  # a stopped worker: the queue stays as written
    keep, drop, other = pca_request(snapshots), pca_request(snapshots, view="b"), pca_request(snapshots, epoch=2)
    for request, owner in ((keep, "me"), (drop, "me"), (other, "you")):
        assert w.submit(request, 1, owner=owner) == "queued"
    assert w.prune("me", {keep.key}) == 1
    assert {p.stem for p in (w.root / "queue").glob("*.json")} == {keep.key, other.key}


def test_warm_worker_serves_umap(snapshots):
    w = ensure_worker()  # the process-wide worker, warm (shared with the page test)
    assert ensure_worker() is w
    assert w.wait_ready(240), w._log_tail()
    request = ProjectionRequest.create("r1", "a", "umap", [1], [snapshots[1]], {"n_neighbors": 10})
    t0 = time.monotonic()
    w.submit(request, 2)
    done(w, request, timeout=120)
    result = load_result(request)
    assert result.embeddings[1].shape == (40, 2) and np.isfinite(result.embeddings[1]).all()
    assert time.monotonic() - t0 < 30  # warm: no compile on the request's path


def test_the_worker_gives_way_from_its_first_import_on(tmp_path):
    """Its imports and the UMAP warm-up take seconds of CPU while the first page renders: niced from the start
    (it used to lower its priority only once its imports were done)."""
    from mmviz.analysis.worker import NICE

    w = ProjectionWorker(tmp_path / "proto", warm=False)
    try:
        assert os.getpriority(os.PRIO_PROCESS, w.pid) == NICE  # before its imports, which take far longer
        assert w.wait_ready(60), w._log_tail()
        assert os.getpriority(os.PRIO_PROCESS, w.pid) == NICE  # set, not added to a second time
    finally:
        w.stop()
