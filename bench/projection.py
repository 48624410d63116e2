"""Projection speed: UMAP of a 2,000-point probe set per modality on the warm worker, and the PCA view on a cold one.

Writes a run with three epochs of 2,000-sample snapshots (modalities ``a``, ``b``: 128 features each, ``fused``: 256;
10 classes, as the snapshots probe writes them) into a temporary workspace, then measures

- cold: a fresh worker's start-up (import + warm-up fit) and, on a worker started *without* warm-up, the first UMAP
  request (numba compiles on its path: what the warm-up saves);
- warm: each view's UMAP request on the warm worker, from submit to the cached result;
- the page: the embeddings page (AppTest) drawn the first time and after choosing another epoch while its worker is
  still cold (PCA must show at once; UMAP follows later).

Budgets (DESIGN.md §5, issue 6): UMAP per modality on the warm worker <= 3 s; the PCA view <= 1 s after choosing an
epoch, even on a cold worker. Prints the figures, the budgets last; exits 0 when both hold, 1 otherwise.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

UMAP_BUDGET_S = 3.0
PCA_BUDGET_S = 1.0
N, CLASSES, EPOCHS = 2000, 10, 3


def write_run(workspace: Path) -> tuple[str, dict[int, Path]]:
    """A run whose snapshots are 2,000 samples of class-structured features that sharpen epoch by epoch."""
    from mmviz.measures.record import save_npz, snapshot_path
    from mmviz.store import open_store

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(CLASSES), N // CLASSES)
    means = {m: rng.normal(size=(CLASSES, 128)) for m in ("a", "b")}
    with open_store(workspace) as store:
        run_id = store.create_run(config={}, name="bench-projection", dataset="synthetic", method="baseline",
                                  fusion="concat", modalities=["a", "b"])  # fmt: skip
        paths = {}
        for epoch in range(1, EPOCHS + 1):
            arrays = {"index": np.arange(10_000, 10_000 + N), "label": labels}
            for m, strength in (("a", 0.6), ("b", 1.5)):  # 'b' separates classes more than 'a'
                x = strength * epoch * means[m][labels] + rng.normal(size=(N, 128))
                arrays[f"features_{m}"] = np.maximum(x, 0).astype(np.float16)  # post-ReLU features
            arrays["features_fused"] = np.concatenate([arrays["features_a"], arrays["features_b"]], axis=1)
            for m in ("a", "b", "fused"):
                arrays[f"pred_{m}"] = np.where(rng.random(N) < 0.5 + 0.1 * epoch, labels, 0).astype(np.int16)
            arrays["conf_fused"] = rng.random(N).astype(np.float16)
            path = snapshot_path(store.run_dir(run_id), epoch)
            save_npz(path, arrays, compress=False)
            store.add_artifact(run_id, epoch, "snapshot", path.relative_to(store.run_dir(run_id)).as_posix())
            paths[epoch] = path
    return run_id, paths


def time_request(worker, request, timeout: float = 600.0) -> float:
    """Seconds from submit to the cached result."""
    t0 = time.perf_counter()
    worker.submit(request, 2)
    while True:
        state = worker.state(request)
        if state.state == "done":
            return time.perf_counter() - t0
        if state.state == "error" or time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"{request.describe()} failed: {state.message or 'timed out'}")
        time.sleep(0.01)


def measure_page(workspace: Path, run_id: str) -> tuple[float, float, bool]:
    """The page's first render and its rerun after choosing epoch 1, with a worker that has just started."""
    os.environ["MMVIZ_WORKSPACE"] = str(workspace)
    from streamlit.testing.v1 import AppTest

    import mmviz.analysis.worker as worker_module

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["run"] = run_id
    at.run()
    t0 = time.perf_counter()
    at.switch_page("pages/embeddings.py").run()  # starts this process's worker: cold
    first = time.perf_counter() - t0
    assert not at.exception, at.exception
    t0 = time.perf_counter()
    at.select_slider(key="emb.epoch").set_value(1).run()
    choose = time.perf_counter() - t0
    assert not at.exception, at.exception
    assert sum(c.value.startswith("PCA · UMAP") for c in at.caption) == 3  # PCA at once, UMAP to follow
    cold = not worker_module.ensure_worker().ready()
    worker_module.ensure_worker().stop()
    return first, choose, cold


def main() -> int:
    from mmviz.analysis.worker import ProjectionRequest, ProjectionWorker

    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "ws"
        run_id, paths = write_run(workspace)
        views = ("a", "b", "fused")

        def request(view: str, epoch: int, **params) -> ProjectionRequest:
            return ProjectionRequest.create(run_id, view, "umap", [epoch], [paths[epoch]], params or None)

        page_first, page_choose, page_cold = measure_page(workspace, run_id)
        print(f"page, cold worker: first render {page_first:.2f} s, PCA after choosing an epoch {page_choose:.2f} s"
              f"{'' if page_cold else ' (the worker was already warm)'}")  # fmt: skip

        cold_worker = ProjectionWorker(warm=False)
        try:
            cold_worker.wait_ready(120)
            cold_first = time_request(cold_worker, request("a", 1, min_dist=0.11))
        finally:
            cold_worker.stop()
        print(f"cold worker (no warm-up): first UMAP of 'a' ({N} points) {cold_first:.2f} s, numba compile included")

        t0 = time.perf_counter()
        worker = ProjectionWorker(warm=True)
        try:
            if not worker.wait_ready(300):
                raise RuntimeError(f"the worker did not warm up: {worker._log_tail()}")
            startup = time.perf_counter() - t0
            print(f"warm worker: start-up and warm-up {startup:.2f} s (off the page's path)")
            warm = {v: time_request(worker, request(v, 2)) for v in views}
            print("warm worker, UMAP of 2,000 points: " + ", ".join(f"{v} {s:.2f} s" for v, s in warm.items()))
            t0 = time.perf_counter()
            worker.submit(request("a", 2), 2)
            again = time.perf_counter() - t0
            print(f"the same request again (cache): {again * 1000:.1f} ms")
        finally:
            worker.stop()

    slowest = max(warm.values())
    ok = slowest <= UMAP_BUDGET_S and page_choose <= PCA_BUDGET_S
    print(
        f"UMAP per modality, warm worker: {slowest:.2f} s (budget <= {UMAP_BUDGET_S:.0f} s); PCA view after "
        f"choosing an epoch, cold worker: {page_choose:.2f} s (budget <= {PCA_BUDGET_S:.0f} s): "
        + ("OK" if ok else "OVER BUDGET")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
